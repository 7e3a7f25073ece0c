//! Authentication through ssh-agent (its own test binary: it sets SSH_AUTH_SOCK for the
//! whole process before any thread starts).
#![allow(unsafe_code)]

mod common;

use std::time::Duration;

use common::sshd::*;
use lookout::model::HostStatus;

#[test]
fn passphrase_protected_key_through_the_agent() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let locked = keygen(dir.path(), "locked", "correct horse");
    let agent = Agent::start(dir.path());
    agent.add(&locked, "correct horse", dir.path());
    // SAFETY: this test binary holds this one test and no thread has started yet.
    unsafe { std::env::set_var("SSH_AUTH_SOCK", &agent.socket) };

    let sshd = Sshd::start(&[public_key(&locked)]);
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line() + "\n").expect("kh");
    // The only key file is the locked one: without the agent this host could not log in.
    let text = config_text(
        dir.path(),
        &locked,
        &known_hosts,
        "strict",
        "",
        &format!("[[hosts]]\nnames = [\"root@127.0.0.1:{}\"]\n", sshd.port),
    );
    let config = parse_config(&text);
    let name = config.hosts[0].name.to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let running = lookout::runtime::start(config);
        let mut rx = running.snapshots.clone();
        let snap = wait_for(&mut rx, Duration::from_secs(10), "up through the agent", |s| {
            host(s, &name).rounds >= 2
        })
        .await;
        assert_eq!(host(&snap, &name).status, HostStatus::Up);
    });
    assert!(sshd.log_text().contains("Accepted publickey for root"));
}
