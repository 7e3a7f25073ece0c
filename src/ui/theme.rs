//! Themes: named semantic styles. Widgets ask for `theme.warning`, `theme.border(focused)`…
//! and never name a colour. A theme file (TOML) sets any subset of the styles over the theme
//! it `extends` (default: `default`); each style sets only the attributes it lists.
//! `NO_COLOR` (any non-empty value) drops every colour and keeps bold/reverse/underline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// The built-in themes, embedded so the binary works from anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
    ("monochrome", include_str!("../../themes/monochrome.toml")),
];

macro_rules! theme_items {
    ($( $field:ident : $doc:literal ),* $(,)?) => {
        /// Every semantic style a widget may use.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Theme {
            pub name: String,
            $( #[doc = $doc] pub $field: Style, )*
        }

        /// The items' names as theme files spell them, with what they style.
        pub const ITEMS: &[(&str, &str)] = &[$((stringify!($field), $doc)),*];

        impl Theme {
            fn blank(name: &str) -> Self {
                Theme { name: name.to_string(), $( $field: Style::new(), )* }
            }
            fn item_mut(&mut self, item: &str) -> Option<&mut Style> {
                match item { $( stringify!($field) => Some(&mut self.$field), )* _ => None }
            }
            /// Each item's name and resolved style, in declaration order.
            pub fn items(&self) -> Vec<(&'static str, Style)> {
                vec![$((stringify!($field), self.$field)),*]
            }
            fn map_styles(&mut self, f: impl Fn(Style) -> Style) {
                $( self.$field = f(self.$field); )*
            }
        }
    };
}

theme_items! {
    text: "ordinary text",
    muted: "secondary text: units, placeholders, empty values",
    border: "panel borders",
    border_focused: "the border of the panel with the keyboard focus",
    title: "panel titles",
    title_focused: "the title of the focused panel",
    header: "table headers",
    selected: "the selected line of the focused panel",
    selected_unfocused: "the selected line of another panel",
    ok: "healthy values and states (host up)",
    warning: "values past the warning level, warning triggers",
    critical: "values past the critical level, critical triggers, hosts down",
    info: "info-severity triggers and neutral highlights",
    stale: "data older than three intervals",
    error: "error messages (connection errors)",
    bar: "maximal-risk bars and per-core bars",
    gauge: "memory and swap gauges",
    sparkline: "history sparklines and charts",
    flash_on: "an unacknowledged firing trigger, bright phase",
    flash_off: "an unacknowledged firing trigger, dark phase",
    pending: "pending triggers",
    acknowledged: "acknowledged triggers",
    silenced: "silenced triggers",
    status_bar: "the top status line",
    hint: "the bottom key-hint line",
    hint_key: "key names in the hint line and help",
    filter: "the filter prompt and the filter in titles",
    popup: "help and chooser popups",
    paused: "the PAUSED marker",
}

impl Theme {
    pub fn border(&self, focused: bool) -> Style {
        if focused { self.border_focused } else { self.border }
    }
    pub fn title(&self, focused: bool) -> Style {
        if focused { self.title_focused } else { self.title }
    }
    pub fn selection(&self, focused: bool) -> Style {
        if focused {
            self.selected
        } else {
            self.selected_unfocused
        }
    }

    /// A theme by name (built-in, then `$XDG_CONFIG_HOME/lookout/themes/NAME.toml`) or path.
    /// `no_color` strips colours (pass whether `NO_COLOR` is set).
    pub fn load(name_or_path: &str, no_color: bool) -> Result<Theme, String> {
        let mut theme = Self::resolve(name_or_path, 0)?;
        if no_color {
            theme.strip_colours();
        }
        Ok(theme)
    }

    /// Whether the environment asks for no colour (<https://no-color.org>).
    pub fn no_color_env() -> bool {
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
    }

    fn resolve(name_or_path: &str, depth: usize) -> Result<Theme, String> {
        if depth > 8 {
            return Err(format!(
                "theme `{name_or_path}`: `extends` goes round in a circle"
            ));
        }
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_toml(name, text, depth);
        }
        let path = Self::find_file(name_or_path).ok_or_else(|| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            let hint = crate::suggest::nearest(name_or_path, names.iter().copied())
                .map(|n| format!(" — did you mean `{n}`?"))
                .unwrap_or_default();
            format!(
                "unknown theme `{name_or_path}`{hint} (built-in: {}; or a path to a .toml file)",
                names.join(", ")
            )
        })?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the theme file {}: {e}", path.display()))?;
        Self::from_toml(&path.display().to_string(), &text, depth)
    }

    fn find_file(name_or_path: &str) -> Option<PathBuf> {
        let direct = Path::new(name_or_path);
        if direct.is_file() {
            return Some(direct.to_path_buf());
        }
        let dir = crate::config::default_path()?.parent()?.join("themes");
        let candidate = dir.join(format!("{name_or_path}.toml"));
        candidate.is_file().then_some(candidate)
    }

    /// Parses one theme file over the theme it extends. `file` names it in errors.
    pub fn from_toml(file: &str, text: &str, depth: usize) -> Result<Theme, String> {
        let raw: ThemeFile = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    (
                        before.matches('\n').count() + 1,
                        before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
                    )
                })
                .unwrap_or((0, 0));
            format!("{file}:{line}:{col}: {}", e.message().trim())
        })?;
        let mut theme = match raw.extends.as_deref() {
            Some(base) => Self::resolve(base, depth + 1)?,
            None if file == "default" => Theme::blank("default"),
            None => Self::resolve("default", depth + 1)?,
        };
        theme.name = file.to_string();
        for (item, spec) in &raw.styles {
            let names: Vec<&str> = ITEMS.iter().map(|(n, _)| *n).collect();
            let style = theme.item_mut(item).ok_or_else(|| {
                let hint = crate::suggest::nearest(item, names.iter().copied())
                    .map(|n| format!(" — did you mean `{n}`?"))
                    .unwrap_or_default();
                format!("{file}: unknown theme item `{item}`{hint}")
            })?;
            *style = spec
                .apply(*style)
                .map_err(|e| format!("{file}: [styles] {item}: {e}"))?;
        }
        Ok(theme)
    }

    fn strip_colours(&mut self) {
        self.map_styles(|s| Style {
            fg: None,
            bg: None,
            underline_color: None,
            ..s
        });
        // Without colour, severity must still stand out.
        let emphasis = |s: Style, m: Modifier| {
            if s.add_modifier.is_empty() {
                s.add_modifier(m)
            } else {
                s
            }
        };
        self.critical = emphasis(self.critical, Modifier::BOLD | Modifier::UNDERLINED);
        self.warning = emphasis(self.warning, Modifier::BOLD);
        self.selected = emphasis(self.selected, Modifier::REVERSED);
        self.flash_on = emphasis(self.flash_on, Modifier::REVERSED);
        self.name.push_str(" (NO_COLOR)");
    }

    /// A readable listing of every item's resolved style (for snapshots and docs).
    pub fn describe(&self) -> String {
        let mut out = format!("theme {}\n", self.name);
        for (name, style) in self.items() {
            let _ = write!(out, "{name:<20}");
            if let Some(fg) = style.fg {
                let _ = write!(out, " fg={fg}");
            }
            if let Some(bg) = style.bg {
                let _ = write!(out, " bg={bg}");
            }
            if !style.add_modifier.is_empty() {
                let _ = write!(out, " +{:?}", style.add_modifier);
            }
            if !style.sub_modifier.is_empty() {
                let _ = write!(out, " -{:?}", style.sub_modifier);
            }
            out.push('\n');
        }
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    /// The theme this one changes (default: `default`).
    extends: Option<String>,
    #[serde(default)]
    styles: std::collections::BTreeMap<String, StyleSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    bold: Option<bool>,
    dim: Option<bool>,
    italic: Option<bool>,
    underlined: Option<bool>,
    reversed: Option<bool>,
}

impl StyleSpec {
    fn apply(&self, mut style: Style) -> Result<Style, String> {
        let colour = |c: &str| -> Result<Option<Color>, String> {
            if c == "none" || c == "reset" {
                return Ok(None);
            }
            Color::from_str(c)
                .map(Some)
                .map_err(|_| format!("unknown colour `{c}` (a name like `yellow`, `#rrggbb` or 0-255)"))
        };
        if let Some(fg) = &self.fg {
            style.fg = colour(fg)?;
        }
        if let Some(bg) = &self.bg {
            style.bg = colour(bg)?;
        }
        for (flag, modifier) in [
            (self.bold, Modifier::BOLD),
            (self.dim, Modifier::DIM),
            (self.italic, Modifier::ITALIC),
            (self.underlined, Modifier::UNDERLINED),
            (self.reversed, Modifier::REVERSED),
        ] {
            match flag {
                Some(true) => {
                    style.add_modifier.insert(modifier);
                    style.sub_modifier.remove(modifier);
                }
                Some(false) => style.add_modifier.remove(modifier),
                None => {}
            }
        }
        Ok(style)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_themes_snapshot() {
        for (name, _) in BUILTIN {
            let theme = Theme::load(name, false).expect("built-in theme loads");
            insta::assert_snapshot!(format!("theme_{name}"), theme.describe());
        }
        let nc = Theme::load("default", true).expect("loads");
        assert!(nc.items().iter().all(|(_, s)| s.fg.is_none() && s.bg.is_none()));
        insta::assert_snapshot!("theme_default_no_color", nc.describe());
    }

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let t = Theme::from_toml("t.toml", "[styles]\nwarning = { fg = \"magenta\" }\n", 0).expect("ok");
        let d = Theme::load("default", false).expect("ok");
        assert_eq!(t.warning.fg, Some(Color::Magenta));
        assert_eq!(t.warning.add_modifier, d.warning.add_modifier);
        assert_eq!(t.critical, d.critical);
        let l = Theme::from_toml(
            "t.toml",
            "extends = \"light\"\n[styles]\nok = { bold = true }\n",
            0,
        )
        .expect("ok");
        assert_eq!(l.text, Theme::load("light", false).expect("ok").text);
    }

    #[test]
    fn theme_errors_are_clear() {
        let e = Theme::from_toml("t.toml", "[styles]\nwarnin = { fg = \"red\" }\n", 0).expect_err("an error");
        assert_eq!(e, "t.toml: unknown theme item `warnin` — did you mean `warning`?");
        let e = Theme::from_toml("t.toml", "[styles]\nok = { fg = \"reddish\" }\n", 0).expect_err("an error");
        assert!(e.contains("unknown colour `reddish`"), "{e}");
        let e = Theme::load("dracula", false).expect_err("an error");
        assert!(e.starts_with("unknown theme `dracula`"), "{e}");
        assert!(
            Theme::load("hight-contrast", false)
                .expect_err("an error")
                .contains("did you mean `high-contrast`")
        );
    }
}
