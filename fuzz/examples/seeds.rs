//! Writes the seeds of `record_segment` and `serve_frames` from a recording directory:
//! `cargo run --example seeds -- RECORDING_DIR CORPUS_DIR` (CORPUS_DIR is fuzz/corpus).
//! Segments are copied as they are (the first 64 KiB of each, a cut-off segment being a
//! case too); their data blocks, decompressed, make the decoder's direct inputs; snapshots
//! of the recording, encoded as a server sends them, make a viewer's session.

use std::path::{Path, PathBuf};

use lookout::record::Recording;
use lookout::record::chunk::{from_ms, ms};
use lookout::record::format::{self, Kind};
use lookout::serve::delta;
use lookout::serve::protocol::{self, ClientMsg, Hello, ServerMsg, Want, WireCommand};

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus directory");
    std::fs::write(dir.join(name), data).expect("write a seed");
    println!("{} ({} bytes)", dir.join(name).display(), data.len());
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [rec_dir, corpus] = &args[..] else {
        eprintln!("usage: seeds RECORDING_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let rec_out = corpus.join("record_segment");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(rec_dir)
        .expect("recording directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "lkr"))
        .collect();
    segments.sort();
    for (n, seg) in segments.iter().enumerate() {
        let bytes = std::fs::read(seg).expect("read a segment");
        write(
            &rec_out,
            &format!("segment-{n}"),
            &bytes[..bytes.len().min(64 << 10)],
        );
        let index = format::index_segment(seg).expect("a segment");
        let mut file = std::fs::File::open(seg).expect("open a segment");
        let len = bytes.len() as u64;
        let mut chunks = Vec::new();
        let mut events = None;
        for b in &index.blocks {
            let Ok((meta, payload)) = format::read_block_at(&mut file, b.offset, len) else {
                continue;
            };
            let raw = zstd::stream::decode_all(&payload[..]).expect("a zstd block");
            match meta.kind {
                Kind::Data if chunks.len() < 6 => chunks.push((meta.is_key(), raw)),
                Kind::Events if events.is_none() => events = Some(raw),
                _ => {}
            }
        }
        let mut joined = Vec::new();
        for (i, (key, raw)) in chunks.iter().enumerate() {
            if i > 0 {
                joined.extend_from_slice(b"LKCH");
            }
            joined.push(u8::from(*key) | 2);
            joined.extend_from_slice(raw);
        }
        if !joined.is_empty() {
            write(
                &rec_out,
                &format!("blocks-{n}"),
                &joined[..joined.len().min(64 << 10)],
            );
        }
        if let Some(e) = events {
            write(&rec_out, &format!("events-{n}"), &e[..e.len().min(16 << 10)]);
        }
    }

    let rec = Recording::open(rec_dir).expect("a recording");
    let (a, b) = rec.span();
    let (a, b) = (ms(a), ms(b));
    let snap = |t: i64| rec.snapshot_at(from_ms(t), None).expect("a snapshot");
    let first = snap(a + (b - a) / 3);
    let second = snap(b);
    let mut hello = Hello::new();
    hello.want = Some(Want::View);
    let mut session = serde_json::to_vec(&hello).expect("json");
    session.push(b'\n');
    let frame = |m: &ServerMsg| protocol::encode(m).expect("a frame");
    session.extend(frame(&ServerMsg::Metrics(protocol::metrics_from(0))));
    session.extend(frame(&delta::full_view(&first)));
    session.extend(frame(&delta::delta(&first, &second, true)));
    if let Some(h) = second.hosts.iter().find(|h| !h.processes.is_empty()) {
        session.extend(frame(&delta::processes(1, h, None).expect("processes")));
    }
    session.extend(frame(&ServerMsg::Event("{\"event\":\"fuzz\"}".into())));
    session.extend(frame(&ServerMsg::Notice("the server stops".into())));
    let serve_out = corpus.join("serve_frames");
    write(&serve_out, "view-session", &session);
    let mut control = serde_json::to_vec(&Hello {
        want: Some(Want::Control),
        ..Hello::new()
    })
    .expect("json");
    control.push(b'\n');
    for m in [
        ClientMsg::Reload,
        ClientMsg::Command(WireCommand::Acknowledge {
            trigger: "cpu high".into(),
            host: "web1".into(),
            instance: String::new(),
        }),
        ClientMsg::Command(WireCommand::Silence {
            trigger: "disk".into(),
            host: "db1".into(),
            instance: "/".into(),
            until: from_ms(b + 60_000),
        }),
        ClientMsg::Command(WireCommand::Reconnect { host: "web1".into() }),
        ClientMsg::Detail {
            id: 1,
            host: Some("web1".into()),
        },
    ] {
        control.extend(protocol::encode(&m).expect("a frame"));
    }
    write(&serve_out, "control-session", &control);
    let mut refused = serde_json::to_vec(&Hello {
        error: Some("protocol 2 is not supported".into()),
        ..Hello::new()
    })
    .expect("json");
    refused.push(b'\n');
    write(&serve_out, "refused", &refused);
}
