//! Split configuration: `include = ["conf.d/*.toml"]` in a config file reads more files.
//!
//! Globs are relative to the including file, their matches are read in sorted order, and an
//! included file may include more (at most [`MAX_DEPTH`] deep). A file that includes itself
//! through any chain is a cycle; a file reached twice is an error too (its hosts and
//! triggers would be defined twice). Included files add hosts, watch lists, checks,
//! triggers and Prometheus sources; the settings tables stay in the main file.
//!
//! Every file is read with [`tolerant::deserialize_all`](super::tolerant::deserialize_all),
//! so each reports all its errors, and each item keeps the index of its file for messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

use super::tolerant::deserialize_all;
use super::{ConfigError, FileConfig, Locator};

/// How deep includes may nest (the main file is level 0).
pub const MAX_DEPTH: usize = 8;

/// What an included file may hold at its top level.
pub const INCLUDED_KEYS: &[&str] = &["include", "hosts", "watch", "trigger", "check", "prometheus"];

/// One file of the configuration, as read.
#[derive(Debug)]
pub struct SourceFile {
    /// The name used in messages: the path as given, or joined to the including file's
    /// directory.
    pub name: String,
    /// The file on disk (`None` for a text given directly, such as a test's).
    pub path: Option<PathBuf>,
    pub text: Arc<str>,
    /// What deserialized (the bad parts taken out; see `tolerant`).
    pub raw: FileConfig,
}

impl SourceFile {
    pub fn locator(&self) -> Locator<'_> {
        Locator {
            file: &self.name,
            text: &self.text,
        }
    }
}

/// Reads the main file's text and everything it includes, depth first in include order.
/// The main file is the first of the list.
pub fn gather(
    text: &str,
    name: &str,
    path: Option<&Path>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Vec<SourceFile> {
    let mut g = Gatherer {
        out: Vec::new(),
        seen: Vec::new(),
        chain: Vec::new(),
        errors,
        warnings,
    };
    let canonical = path.and_then(|p| p.canonicalize().ok());
    g.file(
        name.to_string(),
        path.map(Path::to_path_buf),
        canonical,
        Arc::from(text),
        None,
    );
    g.out
}

struct Gatherer<'a> {
    out: Vec<SourceFile>,
    /// Canonical paths read so far, with the place that included each.
    seen: Vec<(PathBuf, String)>,
    /// Names of the files on the current include path, for cycle messages.
    chain: Vec<(Option<PathBuf>, String)>,
    errors: &'a mut Vec<ConfigError>,
    warnings: &'a mut Vec<String>,
}

impl Gatherer<'_> {
    /// Reads one file and, recursively, what it includes. `included_from` is the place
    /// (`file:line:col`) of the include that named it; `None` for the main file.
    fn file(
        &mut self,
        name: String,
        path: Option<PathBuf>,
        canonical: Option<PathBuf>,
        text: Arc<str>,
        included_from: Option<&str>,
    ) {
        let main = included_from.is_none();
        let loc = Locator {
            file: &name,
            text: &text,
        };
        // Settings tables belong to the main file: name the key and where it must go.
        let mut misplaced = Vec::new();
        let prepare = |t: &mut DeTable<'_>| {
            if main {
                return;
            }
            let bad: Vec<_> = t
                .keys()
                .filter(|k| !INCLUDED_KEYS.contains(&k.get_ref().as_ref()))
                .cloned()
                .collect();
            for k in bad {
                misplaced.push((k.get_ref().to_string(), k.span()));
                t.remove(&k);
            }
        };
        let parsed = deserialize_all::<FileConfig>(&text, prepare);
        let main_name = self
            .chain
            .first()
            .map_or(name.as_str(), |(_, n)| n.as_str())
            .to_string();
        for (key, span) in misplaced {
            let what = match key.as_str() {
                "general" | "ssh" | "ping" | "alertmanager" | "keys" => format!("[{key}]"),
                other => format!("`{other}`"),
            };
            self.errors.push(loc.error(
                span,
                format!(
                    "{what} can only be set in the main config file ({main_name}); an included \
                     file adds [[hosts]], [[watch.*]], [[check]], [[trigger]] and [[prometheus]] tables"
                ),
            ));
        }
        self.errors
            .extend(parsed.errors.iter().map(|e| loc.toml_error(e)));
        let mut raw = parsed.value.unwrap_or_default();
        let includes = std::mem::take(&mut raw.include);
        if let Some(c) = &canonical {
            self.seen
                .push((c.clone(), included_from.unwrap_or(&name).to_string()));
        }
        self.chain.push((canonical, name.clone()));
        let dir = path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .or_else(|| Path::new(&name).parent().map(Path::to_path_buf))
            .unwrap_or_default();
        self.out.push(SourceFile {
            name: name.clone(),
            path,
            text: text.clone(),
            raw,
        });
        for pattern in includes {
            let (line, col) = loc.line_col(pattern.span().start);
            let here = format!("{name}:{line}:{col}");
            for m in self.expand(&dir, &pattern, &loc) {
                self.include(m, &here, &loc, pattern.span());
            }
        }
        self.chain.pop();
    }

    /// The files one include pattern names, sorted; errors for a bad pattern or a plain
    /// path that does not exist, a warning for a glob that matches nothing.
    fn expand(&mut self, dir: &Path, pattern: &toml::Spanned<String>, loc: &Locator) -> Vec<PathBuf> {
        let p = pattern.get_ref().trim();
        if p.is_empty() {
            self.errors
                .push(loc.error(pattern.span(), "`include` needs a path or glob, not \"\""));
            return Vec::new();
        }
        let expanded = super::expand_path(p);
        let is_glob = p.contains(['*', '?', '[']);
        if !is_glob {
            let path = if expanded.is_absolute() {
                expanded
            } else {
                dir.join(expanded)
            };
            if !path.is_file() {
                self.errors.push(loc.error(
                    pattern.span(),
                    format!("included file `{}` does not exist", path.display()),
                ));
                return Vec::new();
            }
            return vec![path];
        }
        let full = if expanded.is_absolute() || dir.as_os_str().is_empty() {
            expanded.to_string_lossy().into_owned()
        } else {
            // Only the pattern's own part is a glob; the directory is taken literally.
            format!(
                "{}/{}",
                glob::Pattern::escape(&dir.to_string_lossy()),
                expanded.to_string_lossy()
            )
        };
        let paths = match glob::glob(&full) {
            Ok(paths) => paths,
            Err(e) => {
                self.errors.push(loc.error(
                    pattern.span(),
                    format!("`include` pattern `{p}` is not a valid glob: {}", e.msg),
                ));
                return Vec::new();
            }
        };
        let mut found: Vec<PathBuf> = paths.flatten().filter(|p| p.is_file()).collect();
        found.sort();
        if found.is_empty() {
            let (line, col) = loc.line_col(pattern.span().start);
            self.warnings.push(format!(
                "{}:{line}:{col}: `include` pattern `{p}` matches no file",
                loc.file
            ));
        }
        found
    }

    fn include(&mut self, path: PathBuf, here: &str, loc: &Locator, span: std::ops::Range<usize>) {
        let path = normalize(&path);
        let shown = path.display().to_string();
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if let Some(start) = self
            .chain
            .iter()
            .position(|(c, _)| c.as_ref() == Some(&canonical))
        {
            let mut names: Vec<&str> = self.chain[start..].iter().map(|(_, n)| n.as_str()).collect();
            names.push(&shown);
            self.errors
                .push(loc.error(span, format!("include cycle: {}", names.join(" -> "))));
            return;
        }
        if let Some((_, from)) = self.seen.iter().find(|(c, _)| *c == canonical) {
            self.errors.push(loc.error(
                span,
                format!("`{shown}` is included twice (already included at {from})"),
            ));
            return;
        }
        if self.chain.len() > MAX_DEPTH {
            let mut names: Vec<&str> = self.chain.iter().map(|(_, n)| n.as_str()).collect();
            names.push(&shown);
            self.errors.push(loc.error(
                span,
                format!(
                    "includes nest more than {MAX_DEPTH} levels deep: {}",
                    names.join(" -> ")
                ),
            ));
            return;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.errors
                    .push(loc.error(span, format!("cannot read included file `{shown}`: {e}")));
                return;
            }
        };
        self.file(shown, Some(path), Some(canonical), Arc::from(text), Some(here));
    }
}

/// `a/b/../c` -> `a/c`, `./a` -> `a`, without touching the disk (for messages; symlinks
/// are judged by the canonical path).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
