//! Barman's ways of writing durations and sizes, so that a DBA reads walpipe's check as
//! they read Barman's: `last_wal_maximum_age` values (`2 hours`, `1 day`), ages
//! (`1 hour, 2 minutes`) and sizes (`1.5 GiB`).

use std::time::Duration;

use wal_core::WalError;
use wal_core::error::Result;

/// Parses `N unit`: Barman's `day`, `week`, `month` (31 days) and `hour`, plural or not,
/// any case; also `minute` and `second`. At most ten years.
pub fn parse_age(text: &str) -> Result<Duration> {
    let bad = || {
        WalError::Usage(format!(
            "--last-wal-maximum-age {text:?}: not an age (`N hours`, `N days`, `N weeks`, \
             `N months`, `N minutes`, `N seconds`)"
        ))
    };
    let mut words = text.split_whitespace();
    let (Some(number), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad());
    };
    if !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix('s').unwrap_or(&unit);
    let seconds = match unit {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        "month" => 31 * 86_400,
        _ => return Err(bad()),
    };
    let total = number.checked_mul(seconds).ok_or_else(bad)?;
    if total > 10 * 366 * 86_400 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Barman's `human_readable_timedelta`: `2 days, 1 hour, 5 seconds`; under a second,
/// `less than one second`.
#[must_use]
pub fn human_duration(age: Duration) -> String {
    let total = age.as_secs();
    let parts = [
        (total / 86_400, "day"),
        ((total % 86_400) / 3600, "hour"),
        ((total % 3600) / 60, "minute"),
        (total % 60, "second"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if total == 0 {
        "less than one second".into()
    } else {
        words.join(", ")
    }
}

/// Barman's `pretty_size` (powers of 1024): `512 B`, `1.5 KiB`, `16.0 MiB`.
#[must_use]
pub fn pretty_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    #[allow(clippy::cast_precision_loss)] // a size shown to one decimal
    let mut size = bytes as f64;
    for (index, unit) in UNITS.iter().enumerate() {
        if size < 1024.0 || index == UNITS.len() - 1 {
            return if index == 0 {
                format!("{bytes} {unit}")
            } else {
                format!("{size:.1} {unit}")
            };
        }
        size /= 1024.0;
    }
    unreachable!("the last unit returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_as_barman_writes_them() {
        assert_eq!(parse_age("2 hours").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_age(" 1 DAY ").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_age("1 month").unwrap(),
            Duration::from_secs(31 * 86_400)
        );
        assert_eq!(
            parse_age("3 weeks").unwrap(),
            Duration::from_secs(21 * 86_400)
        );
        assert_eq!(parse_age("90 seconds").unwrap(), Duration::from_secs(90));
        for bad in [
            "",
            "2",
            "hours",
            "-1 hours",
            "+1 hours",
            "1.5 hours",
            "2 fortnights",
            "99999999999999999999 days",
            "1000 months",
            "1 hour 2",
        ] {
            let err = parse_age(bad).unwrap_err();
            assert_eq!(err.kind(), wal_core::ErrorKind::Usage, "{bad:?}");
        }
    }

    #[test]
    fn durations_and_sizes_read_as_barmans() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "less than one second"
        );
        assert_eq!(
            human_duration(Duration::from_secs(61)),
            "1 minute, 1 second"
        );
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 3600 + 5)),
            "2 days, 1 hour, 5 seconds"
        );
        assert_eq!(pretty_size(0), "0 B");
        assert_eq!(pretty_size(1023), "1023 B");
        assert_eq!(pretty_size(1536), "1.5 KiB");
        assert_eq!(pretty_size(16 << 20), "16.0 MiB");
        assert_eq!(pretty_size(u64::MAX), "16.0 EiB");
    }
}
