//! Secrets in a plan (issue #18): the config's mode when it holds one, and the masking of
//! secret values in what a dry run prints. Which values are secrets: docs/records.md's rule
//! (`crate::state::is_secret`).

use super::Plan;

impl Plan {
    /// The installed config's mode: 0644, or owner-only when a VM value in it is a secret
    /// (`vncpasswd`, a password hash, ...).
    pub(crate) fn config_mode(&self) -> u32 {
        let secret_in_config = self
            .resolved
            .vm
            .iter()
            .any(|e| crate::state::is_secret(&e.key, &e.value.to_text()));
        if secret_in_config { 0o600 } else { 0o644 }
    }

    /// The secret values of this plan (docs/records.md's rule), longest first.
    fn secret_values(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .resolved
            .image
            .iter()
            .chain(&self.resolved.vm)
            .map(|e| (e.key.as_str(), e.value.to_text()))
            .filter(|(k, t)| crate::state::is_secret(k, t) && t.len() >= 3)
            .map(|(_, t)| t)
            .collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.len()));
        v
    }

    /// `text` with every secret value of the plan replaced by `********`: what a dry run
    /// prints (issue #18).
    pub(crate) fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secret_values() {
            out = out.replace(&s, crate::state::MASK);
        }
        out
    }
}
