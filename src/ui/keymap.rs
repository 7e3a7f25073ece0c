//! Key bindings: the actions a user can bind, their defaults, and the validation of the
//! config's `[keys]` table (unknown actions, unparseable keys and duplicates are located
//! errors, reported by `lookout check` as well as at start-up).

use std::collections::BTreeMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::config::{Config, ConfigError, ConfigErrors, Locator};

macro_rules! actions {
    ($( $variant:ident = $name:literal, $help:literal, [$($key:literal),*]; )*) => {
        /// Something a key can do. The names are the `[keys]` table's keys.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action { $($variant),* }

        impl Action {
            /// Every action, in the order the help overlay lists them.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];
            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name),* }
            }
            pub fn help(self) -> &'static str {
                match self { $(Action::$variant => $help),* }
            }
            fn default_keys(self) -> &'static [&'static str] {
                match self { $(Action::$variant => &[$($key),*]),* }
            }
        }
    };
}

actions! {
    Up = "up", "move up", ["up", "k"];
    Down = "down", "move down", ["down", "j"];
    PageUp = "page_up", "page up", ["pageup"];
    PageDown = "page_down", "page down", ["pagedown"];
    Top = "top", "first line", ["g", "home"];
    Bottom = "bottom", "last line", ["G", "end"];
    NextPanel = "next_panel", "next panel", ["tab"];
    PrevPanel = "prev_panel", "previous panel", ["backtab"];
    Open = "open", "host detail / jump to host", ["enter"];
    Back = "back", "back / close / clear filter / live", ["esc"];
    Filter = "filter", "filter hosts (live substring)", ["/"];
    Sort = "sort", "sort by the next column", ["s"];
    SortReverse = "sort_reverse", "reverse the sort", ["S"];
    Acknowledge = "acknowledge", "acknowledge the selected trigger", ["a"];
    Silence = "silence", "silence the selected trigger for a while", ["x"];
    Reconnect = "reconnect", "reconnect the selected host", ["r"];
    Reload = "reload", "re-read the config files, apply them in place", ["R"];
    Log = "log", "show / hide the event log", ["l"];
    Pause = "pause", "pause / resume the display", ["p"];
    RewindBack = "rewind_back", "rewind one interval (from the recording)", ["["];
    RewindForward = "rewind_forward", "one interval forward while rewound", ["]"];
    RewindBack5m = "rewind_back_5m", "rewind five minutes", ["{"];
    RewindForward5m = "rewind_forward_5m", "five minutes forward while rewound", ["}"];
    RewindTo = "rewind_to", "rewind to a typed time (Esc: back to live)", ["t"];
    Help = "help", "this help", ["?", "f1"];
    Quit = "quit", "quit", ["q"];
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One key with its modifiers, normalised so that bindings compare equal to events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyCodeOrd,
    pub ctrl: bool,
    pub alt: bool,
}

/// `KeyCode` restricted to what bindings use, with an order (for maps and stable help).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCodeOrd {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Insert,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
}

const NAMED: &[(&str, KeyCodeOrd)] = &[
    ("enter", KeyCodeOrd::Enter),
    ("return", KeyCodeOrd::Enter),
    ("esc", KeyCodeOrd::Esc),
    ("escape", KeyCodeOrd::Esc),
    ("tab", KeyCodeOrd::Tab),
    ("backtab", KeyCodeOrd::BackTab),
    ("shift-tab", KeyCodeOrd::BackTab),
    ("backspace", KeyCodeOrd::Backspace),
    ("delete", KeyCodeOrd::Delete),
    ("del", KeyCodeOrd::Delete),
    ("insert", KeyCodeOrd::Insert),
    ("up", KeyCodeOrd::Up),
    ("down", KeyCodeOrd::Down),
    ("left", KeyCodeOrd::Left),
    ("right", KeyCodeOrd::Right),
    ("pageup", KeyCodeOrd::PageUp),
    ("pgup", KeyCodeOrd::PageUp),
    ("pagedown", KeyCodeOrd::PageDown),
    ("pgdn", KeyCodeOrd::PageDown),
    ("home", KeyCodeOrd::Home),
    ("end", KeyCodeOrd::End),
    ("space", KeyCodeOrd::Char(' ')),
];

impl Key {
    pub const fn plain(code: KeyCodeOrd) -> Self {
        Key {
            code,
            ctrl: false,
            alt: false,
        }
    }

    /// Parses `q`, `G`, `?`, `enter`, `pgdn`, `f1`, `ctrl-r`, `alt-x`, `shift-tab`.
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err("an empty key".into());
        }
        let (mut ctrl, mut alt, mut shift) = (false, false, false);
        loop {
            let lower = rest.to_ascii_lowercase();
            // A lone "-" is the minus key, not a modifier separator.
            if rest.len() > 1 && lower.starts_with("ctrl-") {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.len() > 1 && lower.starts_with("alt-") {
                alt = true;
                rest = &rest[4..];
            } else if rest.len() > 1 && lower.starts_with("shift-") && lower != "shift-tab" {
                shift = true;
                rest = &rest[6..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() => {
                KeyCodeOrd::Char(if shift { c.to_ascii_uppercase() } else { c })
            }
            _ => {
                let lower = rest.to_ascii_lowercase();
                if let Some(&(_, code)) = NAMED.iter().find(|(n, _)| *n == lower) {
                    if shift && code == KeyCodeOrd::Tab {
                        KeyCodeOrd::BackTab
                    } else {
                        code
                    }
                } else if let Some(n) = lower.strip_prefix('f').and_then(|n| n.parse::<u8>().ok())
                    && (1..=12).contains(&n)
                {
                    KeyCodeOrd::F(n)
                } else {
                    let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
                    let hint = crate::suggest::nearest(&lower, names.iter().copied())
                        .map(|n| format!(" — did you mean `{n}`?"))
                        .unwrap_or_else(|| {
                            " — expected one character, a name such as `enter`, `pgdn`, `f1`, \
                             optionally with `ctrl-` or `alt-`"
                                .to_string()
                        });
                    return Err(format!("cannot read the key `{text}`{hint}"));
                }
            }
        };
        Ok(Key { code, ctrl, alt })
    }

    /// The binding a terminal key event matches (None for keys no binding can name).
    pub fn from_event(ev: &KeyEvent) -> Option<Key> {
        let code = match ev.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(c),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::Enter => KeyCodeOrd::Enter,
            KeyCode::Esc => KeyCodeOrd::Esc,
            KeyCode::Tab if ev.modifiers.contains(KeyModifiers::SHIFT) => KeyCodeOrd::BackTab,
            KeyCode::Tab => KeyCodeOrd::Tab,
            KeyCode::BackTab => KeyCodeOrd::BackTab,
            KeyCode::Backspace => KeyCodeOrd::Backspace,
            KeyCode::Delete => KeyCodeOrd::Delete,
            KeyCode::Insert => KeyCodeOrd::Insert,
            KeyCode::Up => KeyCodeOrd::Up,
            KeyCode::Down => KeyCodeOrd::Down,
            KeyCode::Left => KeyCodeOrd::Left,
            KeyCode::Right => KeyCodeOrd::Right,
            KeyCode::PageUp => KeyCodeOrd::PageUp,
            KeyCode::PageDown => KeyCodeOrd::PageDown,
            KeyCode::Home => KeyCodeOrd::Home,
            KeyCode::End => KeyCodeOrd::End,
            _ => return None,
        };
        Some(Key {
            code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("Ctrl-")?;
        }
        if self.alt {
            f.write_str("Alt-")?;
        }
        match self.code {
            KeyCodeOrd::Char(' ') => f.write_str("Space"),
            KeyCodeOrd::Char(c) => write!(f, "{c}"),
            KeyCodeOrd::F(n) => write!(f, "F{n}"),
            KeyCodeOrd::Enter => f.write_str("Enter"),
            KeyCodeOrd::Esc => f.write_str("Esc"),
            KeyCodeOrd::Tab => f.write_str("Tab"),
            KeyCodeOrd::BackTab => f.write_str("Shift-Tab"),
            KeyCodeOrd::Backspace => f.write_str("Backspace"),
            KeyCodeOrd::Delete => f.write_str("Del"),
            KeyCodeOrd::Insert => f.write_str("Ins"),
            KeyCodeOrd::Up => f.write_str("↑"),
            KeyCodeOrd::Down => f.write_str("↓"),
            KeyCodeOrd::Left => f.write_str("←"),
            KeyCodeOrd::Right => f.write_str("→"),
            KeyCodeOrd::PageUp => f.write_str("PgUp"),
            KeyCodeOrd::PageDown => f.write_str("PgDn"),
            KeyCodeOrd::Home => f.write_str("Home"),
            KeyCodeOrd::End => f.write_str("End"),
        }
    }
}

/// A key as written in the config, with where it was written.
type LocatedKey = (Key, std::ops::Range<usize>);

/// The resolved bindings: key -> action, and each action's keys in binding order.
#[derive(Clone, Debug)]
pub struct Keymap {
    by_key: BTreeMap<Key, Action>,
    by_action: BTreeMap<Action, Vec<Key>>,
}

impl Default for Keymap {
    fn default() -> Self {
        let mut by_key = BTreeMap::new();
        let mut by_action = BTreeMap::new();
        for &a in Action::ALL {
            let keys: Vec<Key> = a
                .default_keys()
                .iter()
                .filter_map(|k| Key::parse(k).ok())
                .collect();
            for &k in &keys {
                by_key.insert(k, a);
            }
            by_action.insert(a, keys);
        }
        Keymap { by_key, by_action }
    }
}

impl Keymap {
    /// The default bindings with the config's `[keys]` applied: an action named there gets
    /// exactly the keys listed (replacing its defaults). Every problem is reported at once.
    pub fn from_config(config: &Config) -> Result<Keymap, ConfigErrors> {
        let file = config
            .path
            .as_ref()
            .map_or_else(|| "<built-in default>".to_string(), |p| p.display().to_string());
        let loc = Locator {
            file: &file,
            text: &config.source_text,
        };
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut map = Keymap::default();
        // Which config entry bound each key, for duplicate messages: key -> (action, span).
        let mut user: BTreeMap<Key, (Action, std::ops::Range<usize>)> = BTreeMap::new();
        let mut rebound: Vec<(Action, Vec<LocatedKey>)> = Vec::new();
        for (name, keys) in &config.keys {
            let Some(&action) = Action::ALL.iter().find(|a| a.name() == name.get_ref()) else {
                let hint = crate::suggest::nearest(name.get_ref(), Action::ALL.iter().map(|a| a.name()))
                    .map(|n| format!(" — did you mean `{n}`?"))
                    .unwrap_or_default();
                errors.push(loc.error(
                    name.span(),
                    format!("unknown action `{}` in [keys]{hint}", name.get_ref()),
                ));
                continue;
            };
            let mut parsed = Vec::new();
            for k in keys.get_ref().keys() {
                let span = key_span(&config.source_text, keys.span(), k);
                match Key::parse(k) {
                    Ok(key) => {
                        if let Some((other, _)) = user.get(&key) {
                            errors.push(loc.error(
                                span.clone(),
                                format!("key `{k}` is bound to both `{other}` and `{action}` in [keys]"),
                            ));
                        } else {
                            user.insert(key, (action, span.clone()));
                            parsed.push((key, span));
                        }
                    }
                    Err(msg) => errors.push(loc.error(span, format!("in [keys] {action}: {msg}"))),
                }
            }
            if keys.get_ref().keys().is_empty() {
                errors.push(loc.error(keys.span(), format!("[keys] {action}: give at least one key")));
            }
            rebound.push((action, parsed));
        }
        // Replace the defaults of every rebound action, then check the user's keys against
        // the defaults still in force.
        for (action, keys) in &rebound {
            if let Some(old) = map
                .by_action
                .insert(*action, keys.iter().map(|(k, _)| *k).collect())
            {
                for k in old {
                    if map.by_key.get(&k) == Some(action) {
                        map.by_key.remove(&k);
                    }
                }
            }
        }
        for (action, keys) in &rebound {
            for (key, span) in keys {
                if let Some(&other) = map.by_key.get(key)
                    && other != *action
                    && !rebound.iter().any(|(a, _)| *a == other)
                {
                    errors.push(loc.error(
                        span.clone(),
                        format!(
                            "key `{key}` for `{action}` is already bound to `{other}` by default; \
                             rebind `{other}` in [keys] too"
                        ),
                    ));
                    continue;
                }
                map.by_key.insert(*key, *action);
            }
        }
        errors.sort_by_key(|e| (e.line, e.column));
        if errors.is_empty() {
            Ok(map)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        Key::from_event(ev).and_then(|k| self.by_key.get(&k).copied())
    }

    pub fn keys(&self, action: Action) -> &[Key] {
        self.by_action.get(&action).map_or(&[], Vec::as_slice)
    }

    /// The keys of an action for display, e.g. `↑/k`.
    pub fn label(&self, action: Action) -> String {
        let keys = self.keys(action);
        let mut out = String::new();
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&k.to_string());
        }
        out
    }

    /// The first key of an action, for the hint line.
    pub fn first(&self, action: Action) -> String {
        self.keys(action)
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// The span of one key string inside a `[keys]` value (the whole value when not found).
fn key_span(text: &str, value: std::ops::Range<usize>, key: &str) -> std::ops::Range<usize> {
    let Some(slice) = text.get(value.clone()) else {
        return value;
    };
    for quote in ['"', '\''] {
        let needle = format!("{quote}{key}{quote}");
        if let Some(i) = slice.find(&needle) {
            let start = value.start + i;
            return start..start + needle.len();
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keymap(text: &str) -> Result<Keymap, Vec<String>> {
        let config = crate::config::parse(text, "k.toml", Some("k.toml".into())).expect("config parses");
        Keymap::from_config(&config).map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    fn ev(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn defaults_cover_every_action_without_clashes() {
        let km = Keymap::default();
        let mut n = 0;
        for &a in Action::ALL {
            assert!(!km.keys(a).is_empty(), "{a} has no key");
            n += km.keys(a).len();
        }
        assert_eq!(km.by_key.len(), n, "a default key is bound twice");
        assert_eq!(
            km.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(
            km.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        assert_eq!(
            km.action(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::PrevPanel)
        );
    }

    #[test]
    fn parses_keys() {
        assert_eq!(Key::parse("ctrl-r").map(|k| k.to_string()), Ok("Ctrl-r".into()));
        assert_eq!(Key::parse("PgDn").map(|k| k.to_string()), Ok("PgDn".into()));
        assert_eq!(Key::parse("shift-tab").map(|k| k.code), Ok(KeyCodeOrd::BackTab));
        assert_eq!(Key::parse("F5").map(|k| k.code), Ok(KeyCodeOrd::F(5)));
        assert_eq!(Key::parse("-").map(|k| k.code), Ok(KeyCodeOrd::Char('-')));
        assert!(
            Key::parse("entr")
                .expect_err("an error")
                .contains("did you mean `enter`")
        );
    }

    #[test]
    fn rebinding_replaces_defaults() {
        let km = keymap("[keys]\nquit = [\"Q\", \"ctrl-q\"]\ndown = \"n\"\n").expect("valid");
        assert_eq!(km.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert_eq!(
            km.action(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            km.action(&ev(KeyCode::Char('n'), KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(km.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)), None);
        assert_eq!(km.label(Action::Quit), "Q/Ctrl-q");
    }

    #[test]
    fn swapping_two_defaults_is_allowed() {
        let km = keymap("[keys]\nup = \"j\"\ndown = \"k\"\n").expect("valid");
        assert_eq!(
            km.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Up)
        );
    }

    #[test]
    fn bad_bindings_are_located_errors() {
        let errs = keymap("[keys]\nqiut = \"q\"\nhelp = [\"h\", \"entr\"]\nlog = \"h\"\npause = \"a\"\n")
            .expect_err("an error");
        assert_eq!(
            errs,
            vec![
                "k.toml:2:1: unknown action `qiut` in [keys] — did you mean `quit`?",
                "k.toml:3:14: in [keys] help: cannot read the key `entr` — did you mean `enter`?",
                "k.toml:4:7: key `h` is bound to both `help` and `log` in [keys]",
                "k.toml:5:9: key `a` for `pause` is already bound to `acknowledge` by default; rebind `acknowledge` in [keys] too",
            ]
        );
    }
}
