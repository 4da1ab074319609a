//! Reprocessing by selector: the operator's selector, checked and resolved
//! against the configured presets into a [`ContentFilter`].

use serde::{Deserialize, Serialize};
use transcoder::sniff::{PROCESSED_AUDIO, PROCESSED_IMAGES, PROCESSED_VIDEOS};

use crate::config::Presets;
use crate::ids::{Blake3, UserId, parse_rfc3339};
use crate::metadata_store::batches::{ContentFilter, StalePreset};

/// Most contents a selector may name by BLAKE3 (500 fit the default JSON
/// body limit).
pub const MAX_NAMED_CONTENTS: usize = 500;

/// Which contents to reprocess, as the operator asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Sniffed types, exact (`video/mp4`) or by family (`image/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<String>,
    /// Only these presets are remade (and only contents they apply to match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presets: Vec<String>,
    /// Only contents with a variant made by another version of a preset
    /// than the configured one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_only: bool,
    /// First stored at or after (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<String>,
    /// First stored before (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    /// Held by this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// These contents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blake3: Vec<String>,
    /// In this processing state: `pending`, `ready`, `failed` or `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A configured preset and the types it is made for.
struct Configured {
    name: String,
    version: u32,
    types: &'static [&'static [&'static str]],
}

const VIDEOS: &[&[&str]] = &[PROCESSED_VIDEOS];
const IMAGES: &[&[&str]] = &[PROCESSED_IMAGES];
/// An audio-only MP4 or WebM is processed as audio.
const SOUNDS: &[&[&str]] = &[PROCESSED_AUDIO, PROCESSED_VIDEOS];

fn configured(presets: &Presets) -> Vec<Configured> {
    let mut all: Vec<Configured> = presets
        .image
        .iter()
        .map(|p| Configured {
            name: p.name.clone(),
            version: p.version,
            types: IMAGES,
        })
        .collect();
    // The metadata-free original has one version.
    all.push(Configured {
        name: transcoder::render::STRIPPED.into(),
        version: 1,
        types: IMAGES,
    });
    let av = &presets.av;
    for (name, version, types) in [
        (&av.poster.name, av.poster.version, VIDEOS),
        (&av.thumb.name, av.thumb.version, VIDEOS),
        (&av.video.name, av.video.version, VIDEOS),
        (&av.audio.name, av.audio.version, SOUNDS),
    ] {
        all.push(Configured {
            name: name.clone(),
            version,
            types,
        });
    }
    all
}

impl Configured {
    fn applies_to(&self, content_type: &str) -> bool {
        self.types.iter().any(|list| list.contains(&content_type))
    }
}

/// Whether a sniffed type matches a selector's pattern (`image/*` or exact).
fn type_matches(pattern: &str, content_type: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(family) => content_type
            .split_once('/')
            .is_some_and(|(f, _)| f.eq_ignore_ascii_case(family)),
        None => pattern.eq_ignore_ascii_case(content_type),
    }
}

/// The selector, checked and resolved: the filter, and the presets a job
/// makes (`None`: all of them). Errors say what is wrong, for a 400.
pub fn resolve(
    selector: &Selector,
    presets: &Presets,
) -> Result<(ContentFilter, Option<Vec<String>>), String> {
    let configured = configured(presets);
    for name in &selector.presets {
        if !configured.iter().any(|c| &c.name == name) {
            return Err(format!("no preset is named {name:?}"));
        }
    }
    let named = |c: &&Configured| selector.presets.is_empty() || selector.presets.contains(&c.name);
    for pattern in &selector.content_types {
        if !PROCESSED_IMAGES
            .iter()
            .chain(PROCESSED_VIDEOS)
            .chain(PROCESSED_AUDIO)
            .any(|t| type_matches(pattern, t))
        {
            return Err(format!("{pattern:?} is not a type the service processes"));
        }
    }
    let types: Vec<String> = PROCESSED_IMAGES
        .iter()
        .chain(PROCESSED_VIDEOS)
        .chain(PROCESSED_AUDIO)
        .filter(|t| {
            selector.content_types.is_empty()
                || selector.content_types.iter().any(|p| type_matches(p, t))
        })
        .filter(|t| configured.iter().filter(named).any(|c| c.applies_to(t)))
        .map(|t| (*t).to_owned())
        .collect();
    if types.is_empty() {
        return Err("none of the selected presets applies to the selected types".into());
    }
    let stale = if selector.stale_only {
        configured
            .iter()
            .filter(named)
            .map(|c| StalePreset {
                types: types.iter().filter(|t| c.applies_to(t)).cloned().collect(),
                preset: c.name.clone(),
                version: c.version,
            })
            .filter(|s| !s.types.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let time = |field: &str, value: &Option<String>| -> Result<Option<i64>, String> {
        value
            .as_deref()
            .map(|v| parse_rfc3339(v).ok_or_else(|| format!("{field} is not an RFC 3339 time")))
            .transpose()
    };
    if selector.blake3.len() > MAX_NAMED_CONTENTS {
        return Err(format!(
            "a selector names at most {MAX_NAMED_CONTENTS} contents"
        ));
    }
    let blake3 = selector
        .blake3
        .iter()
        .map(|b| Blake3::parse(b).map(|b| b.to_hex()))
        .collect::<Result<Vec<_>, _>>()?;
    let owner = selector
        .owner
        .as_deref()
        .map(|o| UserId::parse(o).map(|u| u.as_str().to_owned()))
        .transpose()?;
    if let Some(status) = &selector.status
        && !["pending", "ready", "failed", "skipped"].contains(&status.as_str())
    {
        return Err("status is pending, ready, failed or skipped".into());
    }
    let filter = ContentFilter {
        types,
        stale,
        created_after: time("created_after", &selector.created_after)?,
        created_before: time("created_before", &selector.created_before)?,
        owner,
        blake3,
        status: selector.status.clone(),
    };
    let only = (!selector.presets.is_empty()).then(|| selector.presets.clone());
    Ok((filter, only))
}

/// Milliseconds between two jobs for `rate` jobs per second (0: unpaced).
pub fn interval_ms(rate: Option<f64>) -> Result<i64, String> {
    match rate {
        None => Ok(0),
        Some(r) if r.is_finite() && r > 0.0 && r <= 100_000.0 => {
            // Whole milliseconds; at least one.
            Ok(((1000.0 / r).round() as i64).max(1))
        }
        Some(_) => Err("rate is jobs per second, more than 0 and at most 100000".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_resolves_against_the_configured_presets() {
        let mut presets = Presets::default();
        let thumb = presets
            .image
            .iter_mut()
            .find(|p| p.name == "thumb")
            .expect("thumb");
        thumb.version = 2;
        let selector = Selector {
            content_types: vec!["image/*".into()],
            presets: vec!["thumb".into()],
            stale_only: true,
            ..Selector::default()
        };
        let (filter, only) = resolve(&selector, &presets).expect("resolves");
        assert_eq!(
            filter.types,
            PROCESSED_IMAGES
                .iter()
                .map(|t| (*t).to_owned())
                .collect::<Vec<_>>()
        );
        assert_eq!(filter.stale.len(), 1);
        assert_eq!(filter.stale[0].version, 2);
        assert_eq!(only, Some(vec!["thumb".to_owned()]));
        // A video preset on images only matches nothing: refused.
        let wrong = Selector {
            content_types: vec!["image/png".into()],
            presets: vec!["h264_720p".into()],
            ..Selector::default()
        };
        assert!(resolve(&wrong, &presets).is_err());
        for bad in [
            Selector {
                presets: vec!["nope".into()],
                ..Selector::default()
            },
            Selector {
                content_types: vec!["text/*".into()],
                ..Selector::default()
            },
            Selector {
                status: Some("done".into()),
                ..Selector::default()
            },
            Selector {
                created_after: Some("yesterday".into()),
                ..Selector::default()
            },
            Selector {
                blake3: vec!["00".into()],
                ..Selector::default()
            },
        ] {
            assert!(resolve(&bad, &presets).is_err(), "{bad:?}");
        }
        assert_eq!(interval_ms(Some(4.0)), Ok(250));
        assert!(interval_ms(Some(0.0)).is_err());
        assert!(interval_ms(Some(f64::NAN)).is_err());
    }
}
