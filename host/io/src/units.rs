//! Sizes and durations as users write them, in config files and on the
//! command line: `"10MiB"`, `4096`, `"500ms"`, `2.5` (seconds).

use std::time::Duration;

use serde::Deserialize;

/// A size: a number of bytes, or a string with a unit (`"10MiB"`, `"512 KiB"`, `"1GB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A duration: a number of seconds (Tornado's style, e.g. `0.5`), or a
/// string with a unit (`"500ms"`, `"10s"`, `"2m"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(f64),
    Text(String),
}

/// Parses a size with an optional unit (`"10MiB"`, `"512 KiB"`, `"1GB"`, `"4096"`).
pub fn parse_size_text(text: &str) -> Result<u64, String> {
    parse_size(&SizeValue::Text(text.to_string()))
}

pub fn parse_size(value: &SizeValue) -> Result<u64, String> {
    match value {
        SizeValue::Bytes(n) => {
            u64::try_from(*n).map_err(|_| format!("{n} is not a size: it must not be negative"))
        }
        SizeValue::Text(s) => {
            let t = s.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let num: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a size like \"10MiB\" or 1048576"))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" => 1 << 10,
                "m" | "mb" => 1_000_000,
                "mib" => 1 << 20,
                "g" | "gb" => 1_000_000_000,
                "gib" => 1 << 30,
                other => {
                    return Err(format!(
                        "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB or GB)"
                    ));
                }
            };
            let bytes = num * mult as f64;
            if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
                return Err(format!("`{s}` is out of range"));
            }
            Ok(bytes as u64)
        }
    }
}

/// Parses seconds (`2.5`) or a number with a unit (`"500ms"`, `"10s"`, `"2m"`, `"1h"`).
pub fn parse_duration_text(text: &str) -> Result<Duration, String> {
    parse_duration(&DurationValue::Text(text.to_string()))
}

pub fn parse_duration(value: &DurationValue) -> Result<Duration, String> {
    let (num, unit, original) = match value {
        DurationValue::Seconds(n) => (*n, "s".to_string(), n.to_string()),
        DurationValue::Text(s) => {
            let t = s.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let num: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a duration like \"500ms\", \"10s\" or 2.5"))?;
            (num, unit.trim().to_ascii_lowercase(), s.clone())
        }
    };
    let secs = match unit.as_str() {
        "ms" => num / 1000.0,
        "" | "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{original}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{original}` is out of range"))
}

/// A duration as users write it: `"10s"`, `"100ms"`, `"1.5ms"`
/// ([`parse_duration_text`] reads it back).
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        // f64 prints the shortest form: 100, 1.5, 0.001.
        format!("{}ms", d.as_nanos() as f64 / 1e6)
    }
}

/// A size as users write it: `"16KiB"`, `"1MiB"`, else bytes (`"1000B"`)
/// ([`parse_size_text`] reads it back).
pub fn format_size(n: u64) -> String {
    if n != 0 && n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else if n != 0 && n.is_multiple_of(1 << 10) {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size(&SizeValue::Text("1.5KiB".into())), Ok(1536));
        assert_eq!(parse_size(&SizeValue::Text("2 MB".into())), Ok(2_000_000));
        assert!(parse_size(&SizeValue::Bytes(-1)).is_err());
        assert!(parse_size(&SizeValue::Text("MiB".into())).is_err());
        assert_eq!(
            parse_duration(&DurationValue::Text("250ms".into())),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration(&DurationValue::Seconds(2.0)),
            Ok(Duration::from_secs(2))
        );
        assert!(parse_duration(&DurationValue::Seconds(-1.0)).is_err());
        assert!(parse_duration(&DurationValue::Text("5 fortnights".into())).is_err());
    }

    #[test]
    fn formatted_values_read_back() {
        for (d, text) in [
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(500), "0.5ms"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration_text(text), Ok(d), "{text} reads back");
        }
        for (n, text) in [
            (16 * 1024, "16KiB"),
            (1 << 20, "1MiB"),
            (1000, "1000B"),
            (0, "0B"),
            (1536, "1536B"),
        ] {
            assert_eq!(format_size(n), text);
            assert_eq!(parse_size_text(text), Ok(n), "{text} reads back");
        }
    }
}
