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

/// `2026-12-07 15:04:05 UTC` for seconds since 1970 (the civil-from-days algorithm).
pub(crate) fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
