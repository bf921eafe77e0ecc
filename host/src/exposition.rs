//! Reads a Prometheus text page (format 0.0.4) back and checks what the
//! naming conventions ask, for tests: the unit tests render the registry
//! through it (crate::metrics, crate::accounting) and tests/dashboard.rs
//! checks a live `/metrics` after traffic. It is a checker, not a general
//! parser: one family's samples are expected right under its TYPE line, as
//! the encoder writes them. `promtool check metrics` (deploy/check-deploy.sh)
//! is the outside judge; this one runs under `cargo test` without it.

/// What [`check`] found on a page.
#[derive(Debug, Default)]
pub struct Page {
    /// Family name -> type, in page order.
    pub families: Vec<(String, String)>,
    pub samples: usize,
}

/// Parses a text-format page back and checks what the conventions ask:
/// every sample belongs to a family with HELP and TYPE, counters end in
/// `_total` and only counters do, histogram series end with `+Inf`
/// equal to `_count`, cumulative buckets never fall, every value parses.
pub fn check(text: &str) -> Result<Page, String> {
    let mut page = Page::default();
    let mut help: Option<String> = None;
    let mut current: Option<(String, String)> = None;
    let mut last_bucket: Option<(String, f64)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if rest.len() <= name.len() + 1 {
                return Err(format!("{name}: empty HELP"));
            }
            help = Some(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, ty) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            if help.as_deref() != Some(name) {
                return Err(format!("{name}: TYPE without its HELP"));
            }
            if page.families.iter().any(|(n, _)| n == name) {
                return Err(format!("{name}: described twice"));
            }
            match ty {
                "counter" if !name.ends_with("_total") => {
                    return Err(format!("counter {name} does not end in _total"))
                }
                "gauge" | "histogram" if name.ends_with("_total") => {
                    return Err(format!("{ty} {name} ends in _total"))
                }
                "counter" | "gauge" | "histogram" => {}
                _ => return Err(format!("{name}: unexpected type {ty:?}")),
            }
            page.families.push((name.to_string(), ty.to_string()));
            current = Some((name.to_string(), ty.to_string()));
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().map_err(|_| format!("bad value: {line}"))?,
        };
        let name = series.split('{').next().unwrap_or("");
        let (family, ty) = current
            .as_ref()
            .ok_or_else(|| format!("sample before any TYPE: {line}"))?;
        let ok = match ty.as_str() {
            "histogram" => [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_string()),
            _ => name == family,
        };
        if !ok {
            return Err(format!("{line}: not a sample of {family} ({ty})"));
        }
        if ty == "histogram" {
            let key = series.split("le=").next().unwrap_or("").to_string();
            if name.ends_with("_bucket") {
                if let Some((k, prev)) = &last_bucket {
                    if *k == key && value < *prev {
                        return Err(format!("{line}: bucket below the one before"));
                    }
                }
                if series.contains("le=\"+Inf\"") {
                    last_bucket = Some((format!("{key}+Inf"), value));
                } else {
                    last_bucket = Some((key, value));
                }
            } else if name.ends_with("_count") {
                let labels = series.strip_prefix(name).unwrap_or("");
                let inner = labels.trim_start_matches('{').trim_end_matches('}');
                let want = if inner.is_empty() {
                    format!("{family}_bucket{{+Inf")
                } else {
                    format!("{family}_bucket{{{inner},+Inf")
                };
                match &last_bucket {
                    Some((k, inf)) if *k == want && *inf == value => {}
                    _ => return Err(format!("{line}: +Inf bucket is not the count")),
                }
            }
        }
        page.samples += 1;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn refuses_what_the_conventions_forbid() {
        let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v\"} 1\n\
                  # HELP h_seconds H.\n# TYPE h_seconds histogram\n\
                  h_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n\
                  h_seconds_sum 3.5\nh_seconds_count 2\n";
        let page = check(ok).unwrap();
        assert_eq!(page.samples, 5);
        for (bad, why) in [
            ("# HELP a_sum A.\n# TYPE a_sum counter\na_sum 1\n", "counter without _total"),
            ("# HELP a_total A.\n# TYPE a_total gauge\na_total 1\n", "gauge with _total"),
            ("# TYPE a gauge\na 1\n", "no HELP"),
            ("# HELP a \n# TYPE a gauge\na 1\n", "empty HELP"),
            ("a 1\n", "no TYPE"),
            ("# HELP a A.\n# TYPE a gauge\nb 1\n", "sample of another family"),
            ("# HELP a A.\n# TYPE a gauge\na x\n", "value does not parse"),
            (
                "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "bucket falls",
            ),
            (
                "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
                "+Inf is not the count",
            ),
        ] {
            assert!(check(bad).is_err(), "{why}: {bad}");
        }
    }
}
