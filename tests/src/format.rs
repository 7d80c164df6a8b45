//! Text formats the fakes need without pulling in a date or URL crate: path segment
//! percent-decoding (GitLab takes `group%2Fproject` and `feature%2Fx` as one segment,
//! GitHub `feature%2Fx`), the timestamp shapes the forges emit (GitHub's RFC 3339,
//! GitLab's ISO 8601 with milliseconds) and HTTP dates (`Last-Modified`,
//! `If-Modified-Since`, `RateLimit-ResetTime`).

/// Decodes `%XX` escapes in one path segment (`+` stays a `+`, unlike form decoding).
pub fn pct_decode(segment: &str) -> String {
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
pub fn iso_millis(secs: u64) -> String {
    let (y, m, d, hh, mm, ss, _) = split_time(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.000Z")
}

/// `2026-01-01T00:00:00.000+00:00`, GitLab's shape for commit dates (git keeps the offset).
pub fn iso_offset(secs: u64) -> String {
    let (y, m, d, hh, mm, ss, _) = split_time(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.000+00:00")
}

/// An IMF-fixdate, e.g. `Thu, 01 Jan 2026 00:00:00 GMT`.
pub fn http_date(secs: u64) -> String {
    let (y, m, d, hh, mm, ss, wd) = split_time(secs);
    let month = MONTHS[(m - 1) as usize];
    format!(
        "{}, {d:02} {month} {y:04} {hh:02}:{mm:02}:{ss:02} GMT",
        DAYS[wd]
    )
}

/// The day count since 1970-01-01 of (year, month 1-12, day).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-01-01T00:00:00Z`, GitHub's shape for timestamps.
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d, hh, mm, ss, _) = split_time(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into epoch seconds.
pub fn parse_http_date(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let days = days_from_civil(year.parse().ok()?, month, day.parse().ok()?);
    let hms: Vec<u64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}
