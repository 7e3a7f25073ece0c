//! "Did you mean" hints for misspelt keys, metrics and selectors.

/// The candidate closest to `word`, if any is close enough to be a plausible typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_typos() {
        assert_eq!(
            super::nearest("intervall", ["interval", "history", "theme"]),
            Some("interval")
        );
        assert_eq!(super::nearest("zzz", ["interval", "history"]), None);
    }
}
