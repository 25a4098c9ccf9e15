//! The document timestamp: the image's own creation time, so the same
//! image always gives the same bytes.

use time::{
    OffsetDateTime,
    format_description::{BorrowedFormatItem, well_known::Rfc3339},
    macros::format_description,
};

use super::SbomError;

/// The fixed time used when an image says nothing (a root directory
/// without SOURCE_DATE_EPOCH).
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// An OCI `created` value (RFC 3339, any offset, maybe fractional
/// seconds) as UTC whole seconds, `YYYY-MM-DDThh:mm:ssZ` (what SPDX wants).
pub fn normalize(created: &str) -> Result<String, SbomError> {
    let t = OffsetDateTime::parse(created, &Rfc3339)
        .map_err(|_| SbomError::Time(created.to_string()))?;
    format_epoch(t.unix_timestamp())
}

/// Seconds since the epoch as `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_epoch(secs: i64) -> Result<String, SbomError> {
    const FORMAT: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .ok_or_else(|| SbomError::Time(secs.to_string()))
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
        assert_eq!(format_epoch(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
    }
}
