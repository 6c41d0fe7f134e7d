//! Data residency: each target says where it is (`region`, free text such as `"nl"` or
//! `"eu-west"`), `[policy] allowed_regions` lists where any repository may be kept, and a
//! repository's own `allowed_regions` narrows that. Where a target's settings name a place
//! themselves (an S3 region, a sovereign Azure cloud), a label that contradicts them is refused.

/// The EU's member states (ISO 3166 codes, lower case): what `"eu"` allows.
const EU: &[&str] = &[
    "at", "be", "bg", "hr", "cy", "cz", "dk", "ee", "fi", "fr", "de", "gr", "hu", "ie", "it", "lv",
    "lt", "lu", "mt", "nl", "pl", "pt", "ro", "sk", "si", "es", "se",
];

/// Where well-known S3 regions are (country codes; `"ap"` for Asia-Pacific).
const S3_REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "us"),
    ("us-east-2", "us"),
    ("us-west-1", "us"),
    ("us-west-2", "us"),
    ("ca-central-1", "ca"),
    ("sa-east-1", "br"),
    ("eu-central-1", "de"),
    ("eu-central-2", "ch"),
    ("eu-west-1", "ie"),
    ("eu-west-2", "gb"),
    ("eu-west-3", "fr"),
    ("eu-north-1", "se"),
    ("eu-south-1", "it"),
    ("eu-south-2", "es"),
    ("me-central-1", "ae"),
    ("il-central-1", "il"),
    ("af-south-1", "za"),
    // Scaleway, Hetzner, OVH.
    ("nl-ams", "nl"),
    ("fr-par", "fr"),
    ("pl-waw", "pl"),
    ("fsn1", "de"),
    ("nbg1", "de"),
    ("hel1", "fi"),
    ("gra", "fr"),
    ("sbg", "fr"),
    ("de", "de"),
    ("uk", "gb"),
];

/// Where an S3 region is, when it is a well-known one.
fn s3_location(region: &str) -> Option<&'static str> {
    let r = region.to_ascii_lowercase();
    S3_REGIONS
        .iter()
        .find(|(code, _)| *code == r)
        .map(|(_, at)| *at)
        .or_else(|| r.starts_with("ap-").then_some("ap"))
}

/// Whether the place `label` is within `allowed` (one entry of an allow list): the same, a
/// part of it (`"eu-west"` within `"eu"`), or an EU state within `"eu"`.
#[must_use]
pub fn within(label: &str, allowed: &str) -> bool {
    let (l, a) = (label.to_ascii_lowercase(), allowed.to_ascii_lowercase());
    l == a || l.starts_with(&format!("{a}-")) || (a == "eu" && EU.contains(&l.as_str()))
}

/// Whether the label `label` fits a place the settings name, `code` (an S3 region), found at
/// `at` (its country), either way round.
fn fits(label: &str, code: &str, at: &str) -> bool {
    let l = label.to_ascii_lowercase();
    within(code, &l) || within(at, &l) || within(&l, at)
}

/// The place a target's own settings name, if any: its S3 region (`s3_region`, else a
/// well-known region in the endpoint's host), or a sovereign Azure cloud's endpoint.
fn named_by_settings(kind: &super::TargetKind) -> Option<(String, &'static str)> {
    match kind {
        super::TargetKind::S3 {
            region, endpoint, ..
        } => {
            if let Some(at) = s3_location(region) {
                return Some((format!("S3 region `{region}`"), at));
            }
            let host = host_of(endpoint);
            S3_REGIONS
                .iter()
                .find(|(code, _)| host.split('.').any(|part| part == *code))
                .map(|(code, at)| (format!("endpoint host `{host}` (region `{code}`)"), *at))
        }
        super::TargetKind::Azblob { endpoint, .. } => {
            let host = host_of(endpoint);
            if host.ends_with(".chinacloudapi.cn") {
                Some((format!("endpoint host `{host}`"), "cn"))
            } else if host.ends_with(".usgovcloudapi.net") {
                Some((format!("endpoint host `{host}`"), "us"))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn host_of(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    host.to_ascii_lowercase()
}

/// Why a target's `region` label contradicts what its settings say of its place, if it does.
#[must_use]
pub fn contradiction(kind: &super::TargetKind, label: &str) -> Option<String> {
    let (what, at) = named_by_settings(kind)?;
    let code = match kind {
        super::TargetKind::S3 { region, .. } => region.as_str(),
        _ => at,
    };
    (!fits(label, code, at))
        .then(|| format!("region {label:?} contradicts its {what}, which is in {at:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_within_an_allow_list() {
        assert!(within("nl", "nl"));
        assert!(within("nl", "eu"));
        assert!(within("eu-west", "eu"));
        assert!(within("NL", "eu"));
        assert!(!within("us", "eu"));
        assert!(!within("eu", "nl"));
        assert!(!within("nlx", "nl"));
        assert!(fits("eu", "eu-central-1", "de"));
        assert!(fits("de", "eu-central-1", "de"));
        assert!(fits("eu-central-1", "eu-central-1", "de"));
        assert!(!fits("nl", "eu-central-1", "de"));
        assert!(!fits("eu", "us-east-1", "us"));
    }
}
