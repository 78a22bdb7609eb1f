//! A strict reader of the Prometheus text exposition format (0.0.4): what
//! a scraper would refuse, this refuses, so `/metrics` is checked for real.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample, or the first line a scraper would refuse and why.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut seen_family: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, _] | ["HELP", name] => {
                    valid_name(name).map_err(|e| fail(&e))?;
                    if helped.contains(&name.to_string()) {
                        return Err(fail("second HELP for one metric"));
                    }
                    helped.push(name.to_string());
                }
                ["TYPE", name, kind] => {
                    valid_name(name).map_err(|e| fail(&e))?;
                    if !matches!(*kind, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                        return Err(fail("unknown metric type"));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(fail("second TYPE for one metric"));
                    }
                    if seen_family.contains(&name.to_string()) {
                        return Err(fail("TYPE after the metric's samples"));
                    }
                }
                _ => {}
            }
            continue;
        }
        let sample = sample(line).map_err(|e| fail(&e))?;
        let family = family_of(&sample.name, &types);
        let Some(kind) = types.get(&family) else { return Err(fail("sample without a TYPE line")) };
        if kind == "counter" && sample.value < 0.0 {
            return Err(fail("negative counter"));
        }
        if seen_family.last() != Some(&family) {
            if seen_family.contains(&family) {
                return Err(fail("a metric's samples are not together"));
            }
            seen_family.push(family);
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// The family a sample belongs to: histograms' samples carry suffixes.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base.to_string();
        }
    }
    name.to_string()
}

fn valid_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    valid_name(name)?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut pos = 0;
        loop {
            if after[pos..].starts_with('}') {
                rest = &after[pos + 1..];
                break;
            }
            let eq = after[pos..].find('=').ok_or("label without =")? + pos;
            let key = &after[pos..eq];
            valid_name(key).map_err(|_| format!("bad label name {key:?}"))?;
            if !after[eq + 1..].starts_with('"') {
                return Err("label value not quoted".into());
            }
            let (value, end) = label_value(&after[eq + 2..])?;
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key:?} twice"));
            }
            pos = eq + 2 + end + 1;
            if after[pos..].starts_with(',') {
                pos += 1;
            } else if !after[pos..].starts_with('}') {
                return Err("labels not separated by commas".into());
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("extra fields after the value".into());
    }
    if !rest.starts_with(' ') {
        return Err("no space before the value".into());
    }
    Ok(Sample { name: name.to_string(), labels, value })
}

/// An escaped label value up to its closing quote: the value and the
/// quote's byte offset.
fn label_value(text: &str) -> Result<(String, usize), String> {
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (escaped, c) {
            (true, 'n') => value.push('\n'),
            (true, '\\') => value.push('\\'),
            (true, '"') => value.push('"'),
            (true, other) => return Err(format!("bad escape \\{other}")),
            (false, '\\') => {
                escaped = true;
                continue;
            }
            (false, '"') => return Ok((value, i)),
            (false, '\n') => return Err("newline in label value".into()),
            (false, c) => value.push(c),
        }
        escaped = false;
    }
    Err("unterminated label value".into())
}

/// The value of the sample `name` with exactly these labels.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_format_and_refuses_what_a_scraper_refuses() {
        let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n# TYPE g gauge\ng{x=\"a\\\"b\\\\c\\nd\",y=\"\"} -1.5e3 1700000000000\n";
        let s = parse(good).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(value(&s, "g", &[("x", "a\"b\\c\nd"), ("y", "")]), Some(-1500.0));
        assert_eq!(value(&s, "h_bucket", &[("le", "+Inf")]), Some(2.0));
        for bad in [
            "a 1\n",                                           // no TYPE
            "# TYPE a gauge\na{x=1} 1\n",                      // unquoted label
            "# TYPE a gauge\na{x=\"1\" y=\"2\"} 1\n",          // no comma
            "# TYPE a gauge\na one\n",                         // bad value
            "# TYPE a gauge\na 1 2 3\n",                       // extra field
            "# TYPE a thing\na 1\n",                           // bad type
            "# TYPE 1a gauge\n",                               // bad name
            "# TYPE a counter\na -1\n",                        // negative counter
            "# TYPE a gauge\n# TYPE a gauge\n",                // two TYPEs
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", // split family
            "# TYPE a gauge\na{x=\"\\q\"} 1\n",                // bad escape
            "# TYPE a gauge\na{x=\"1\"\n",                     // unterminated
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
