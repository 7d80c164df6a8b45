//! Text formats the fake GitLab needs without pulling in a date or URL crate: path segment
//! percent-decoding (GitLab takes `group%2Fproject` and `feature%2Fx` as one segment) and
//! the two timestamp shapes it emits (ISO 8601 with milliseconds, and HTTP dates).

/// Decodes `%XX` escapes in one path segment (`+` stays a `+`, unlike form decoding).
pub(super) fn pct_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| segment.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// (year, month 1-12, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day, hour, minute, second, weekday index into `DAYS`).
fn split_time(secs: u64) -> (i64, u32, u32, u64, u64, u64, usize) {
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let rem = secs % 86_400;
    (
        y,
        m,
        d,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        days.rem_euclid(7) as usize,
    )
}

/// `2026-01-01T00:00:00.000Z`, GitLab's shape for MR and pipeline timestamps.
pub(super) fn iso_millis(secs: u64) -> String {
    let (y, m, d, hh, mm, ss, _) = split_time(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.000Z")
}

/// `2026-01-01T00:00:00.000+00:00`, GitLab's shape for commit dates (git keeps the offset).
pub(super) fn iso_offset(secs: u64) -> String {
    let (y, m, d, hh, mm, ss, _) = split_time(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.000+00:00")
}

/// An IMF-fixdate, e.g. `Thu, 01 Jan 2026 00:00:00 GMT`.
pub(super) fn http_date(secs: u64) -> String {
    let (y, m, d, hh, mm, ss, wd) = split_time(secs);
    let month = MONTHS[(m - 1) as usize];
    format!(
        "{}, {d:02} {month} {y:04} {hh:02}:{mm:02}:{ss:02} GMT",
        DAYS[wd]
    )
}
