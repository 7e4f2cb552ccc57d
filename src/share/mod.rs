//! Sharing images (docs/sharing.md): `image publish` writes signed packs and a signed index
//! into a directory any web server can serve; `image search` and `image pull` read the
//! indexes of the `[sources.*]` in the settings, verify every signature and hash, and hand
//! the pack to the safe `image import`. Keys and signatures are `signing`'s, downloads
//! `fetch`'s; this module never sees the settings (the command line passes the sources in).

mod index;
mod origin;
mod publish;
mod pull;

pub(crate) use origin::{Origin, read as read_origin, write as write_origin};
pub(crate) use publish::{PublishOptions, publish, sha256_file};
pub(crate) use pull::{Installed, PullRequest, Source, cached_names, pull, search};

/// Seconds since 1970.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-12-07 15:04:05 UTC` for seconds since 1970 (`clock::format_utc`, reworded).
pub(crate) fn utc(secs: u64) -> String {
    // `clock` writes ISO 8601 (`1970-01-01T00:00:00Z`); an index's dates read as plain UTC.
    let iso = crate::clock::format_utc(i64::try_from(secs).unwrap_or(i64::MAX));
    format!("{} UTC", iso.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_655_845), "2026-12-07 15:04:05 UTC");
    }
}
