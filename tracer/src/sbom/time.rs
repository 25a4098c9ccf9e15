//! The document timestamp: the image's own creation time, so the same
//! image always gives the same bytes.

use super::SbomError;

/// The fixed time used when an image says nothing (a root directory
/// without SOURCE_DATE_EPOCH).
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// An OCI `created` value (RFC 3339, any offset, maybe fractional
/// seconds) as UTC whole seconds, `YYYY-MM-DDThh:mm:ssZ` (what SPDX wants).
pub fn normalize(created: &str) -> Result<String, SbomError> {
    let bad = || SbomError::Time(created.to_string());
    let b = created.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, SbomError> {
        created.get(r).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &created[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let oh: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let om: i64 = rest[4..6].parse().map_err(|_| bad())?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset;
    Ok(format_epoch(secs))
}

/// Seconds since the epoch as `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_epoch(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days/civil conversions (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_times_become_utc_seconds() {
        assert_eq!(
            normalize("2024-02-29T23:59:59.123456789Z").unwrap(),
            "2024-02-29T23:59:59Z"
        );
        assert_eq!(
            normalize("2024-03-01T01:30:00+02:00").unwrap(),
            "2024-02-29T23:30:00Z"
        );
        assert_eq!(normalize("1970-01-01T00:00:00Z").unwrap(), EPOCH);
        assert!(normalize("yesterday").is_err());
        assert!(normalize("2024-13-01T00:00:00Z").is_err());
        assert_eq!(format_epoch(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
