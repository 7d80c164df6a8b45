//! autoproj's installation manifest (notes/autoproj.md §1): which of its entries
//! are watched, and with which URL and branch.
//!
//! autoproj writes the file with Ruby's YAML dumper and adds keys over time, so
//! this reader is lenient: unknown keys are ignored anywhere, a null where a value
//! is optional counts as absent, and only the keys it needs are typed. Their text
//! is kept as written (`1.10` stays `1.10`, not a float), and anchors/aliases, which
//! Ruby emits for shared strings, are followed.
//!
//! Rules, in order, for each entry:
//! - an entry with a non-null `package_set` key, or with `type: PackageSet` (older
//!   autoproj), is a package set; its name is the `package_set` value, else `name`.
//!   Other entries are packages named by `name`. No name: [`ManifestError::Invalid`];
//! - the `vcs` map has Ruby symbol keys (`:url`): one leading `:` is stripped, plain
//!   keys are accepted too. No `vcs`: skipped ("no version control (vcs)");
//! - `type` other than `git`: skipped ("not a git package (svn)"). A `github:
//!   owner/repo` key without `url` expands to `https://github.com/owner/repo.git`
//!   (repository id `github:/owner/repo.git`) and implies `type: git`;
//! - a git entry without `url`: [`ManifestError::Invalid`];
//! - `commit` or `tag` set (not null, not empty): skipped ("pinned to commit X",
//!   "pinned to tag X");
//! - branch: `remote_branch`, else `branch`, else none (`local_branch` is the local
//!   name, not what is fetched);
//! - a package set is named `pkg_set:` + its `repository_id` (default `git:<url>`);
//! - a name already seen (watched or skipped) is skipped ("duplicate name"): the
//!   first one wins.
//!
//! Empty strings count as absent. Reading stops at the first invalid entry.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Entry, Manifest, ManifestError, Skipped, TopLevel, malformed, parse_document, quoted};

/// Parses the text of an installation manifest.
pub(super) fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let top = parse_document::<Item>(text, path, true)?;
    let items = match top.value {
        TopLevel::Null => {
            return Err(ManifestError::Empty {
                path: path.to_owned(),
            });
        }
        TopLevel::Scalar => {
            return Err(ManifestError::ObsoleteCsv {
                path: path.to_owned(),
            });
        }
        TopLevel::Mapping => {
            return Err(malformed(
                path,
                top.referenced.line(),
                top.referenced.column(),
                "expected a list of packages and package sets, found a mapping",
            ));
        }
        TopLevel::List(items) => items,
    };

    let mut manifest = Manifest::default();
    let mut seen = HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let line = item.referenced.line();
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_owned(),
            entry: index,
            message: format!("line {line}: {message}"),
        };
        let raw = match item.value {
            Item::Map(raw) => raw,
            Item::Other(shape) => {
                return Err(invalid(format!("expected a mapping, found {shape}")));
            }
        };
        let outcome = classify(*raw).map_err(invalid)?;
        let name = match &outcome {
            Outcome::Watch(entry) => &entry.name,
            Outcome::Skip(skipped) => &skipped.name,
        };
        if !seen.insert(name.clone()) {
            manifest.skipped.push(Skipped {
                name: name.clone(),
                reason: "duplicate name".to_owned(),
            });
            continue;
        }
        match outcome {
            Outcome::Watch(entry) => manifest.entries.push(entry),
            Outcome::Skip(skipped) => manifest.skipped.push(skipped),
        }
    }
    Ok(manifest)
}

enum Outcome {
    Watch(Entry),
    Skip(Skipped),
}

/// Applies the rules of the module documentation to one entry; `Err` is the
/// message of an invalid entry.
fn classify(raw: RawEntry) -> Result<Outcome, String> {
    let is_set = raw.package_set.is_some() || raw.kind.as_deref() == Some("PackageSet");
    let what = if is_set { "package set" } else { "package" };
    let label = if is_set {
        raw.package_set.or(raw.name)
    } else {
        raw.name
    }
    .ok_or_else(|| format!("a {what} without `name`"))?;

    let skip = |name: String, reason: String| Ok(Outcome::Skip(Skipped { name, reason }));
    let vcs = match raw.vcs {
        Vcs::Absent => return skip(label, "no version control (vcs)".to_owned()),
        Vcs::NotMap(shape) => {
            return Err(format!(
                "{what} {}: `vcs` must be a mapping, found {shape}",
                quoted(&label)
            ));
        }
        Vcs::Map(vcs) => vcs,
    };
    let github = vcs
        .github
        .as_deref()
        .map(github_path)
        .filter(|path| !path.is_empty());
    // A Ruby Symbol value (`:git`) would be dumped with its colon too.
    let vcs_type = vcs
        .kind
        .as_deref()
        .map(|kind| kind.strip_prefix(':').unwrap_or(kind).to_owned())
        .or_else(|| github.is_some().then(|| "git".to_owned()));
    match vcs_type.as_deref() {
        Some("git") => {}
        other => {
            let name = if is_set {
                let id = vcs
                    .repository_id
                    .clone()
                    .unwrap_or_else(|| match (other, &vcs.url) {
                        (Some(kind), Some(url)) => format!("{kind}:{url}"),
                        _ => label.clone(),
                    });
                format!("pkg_set:{id}")
            } else {
                label
            };
            let reason = match other {
                Some(kind) => format!("not a git package ({kind})"),
                None => "not a git package (no vcs type)".to_owned(),
            };
            return skip(name, reason);
        }
    }

    let (url, default_id) = match (vcs.url, &github) {
        (Some(url), _) => {
            let id = format!("git:{url}");
            (url, id)
        }
        (None, Some(path)) => (
            format!("https://github.com/{path}.git"),
            format!("github:/{path}.git"),
        ),
        (None, None) => {
            return Err(format!(
                "{what} {}: git {what} without `url`",
                quoted(&label)
            ));
        }
    };
    let repository_id = vcs.repository_id.unwrap_or(default_id);
    let name = if is_set {
        format!("pkg_set:{repository_id}")
    } else {
        label
    };
    if let Some(commit) = vcs.commit {
        return skip(name, format!("pinned to commit {commit}"));
    }
    if let Some(tag) = vcs.tag {
        return skip(name, format!("pinned to tag {tag}"));
    }
    Ok(Outcome::Watch(Entry {
        name,
        url,
        branch: vcs.remote_branch.or(vcs.branch),
        package_set: is_set.then_some(repository_id),
    }))
}

/// `owner/repo` of a `github:` shorthand: surrounding slashes and a `.git` suffix
/// removed (the expansion adds it back).
fn github_path(value: &str) -> String {
    let value = value.trim_matches('/');
    value.strip_suffix(".git").unwrap_or(value).to_owned()
}

/// One element of the top-level list.
enum Item {
    Map(Box<RawEntry>),
    /// Not a mapping: what it is, for the message.
    Other(&'static str),
}

/// The keys of an entry that matter here.
#[derive(Default)]
struct RawEntry {
    name: Option<String>,
    package_set: Option<String>,
    /// The entry's `type` (`Autobuild::CMake`, `PackageSet`...), not the VCS type.
    kind: Option<String>,
    vcs: Vcs,
}

#[derive(Default)]
enum Vcs {
    /// No `vcs` key, or `vcs: ~`.
    #[default]
    Absent,
    /// Not a mapping: what it is, for the message.
    NotMap(&'static str),
    Map(RawVcs),
}

/// The keys of a `vcs` map that matter here, colon stripped.
#[derive(Default)]
struct RawVcs {
    kind: Option<String>,
    url: Option<String>,
    branch: Option<String>,
    remote_branch: Option<String>,
    tag: Option<String>,
    commit: Option<String>,
    repository_id: Option<String>,
    github: Option<String>,
}

/// Reads the value of a typed key: its text as written, `None` for null or empty.
fn text_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<String>, A::Error> {
    Ok(map
        .next_value::<Option<String>>()?
        .filter(|text| !text.is_empty()))
}

/// Reads the next key as text (`None` for a null or collection key), one leading
/// `:` stripped.
fn next_key<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Option<String>>, A::Error> {
    Ok(map.next_key::<Key>()?.map(|key| {
        key.0.map(|text| match text.strip_prefix(':') {
            Some(stripped) => stripped.to_owned(),
            None => text,
        })
    }))
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryFields;

        impl<'de> MapReader<'de> for EntryFields {
            type Value = RawEntry;

            fn read<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
                let mut raw = RawEntry::default();
                while let Some(key) = next_key(&mut map)? {
                    match key.as_deref() {
                        Some("name") => raw.name = text_value(&mut map)?,
                        Some("package_set") => raw.package_set = text_value(&mut map)?,
                        Some("type") => raw.kind = text_value(&mut map)?,
                        Some("vcs") => raw.vcs = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }

        Ok(
            match deserializer.deserialize_any(ShapeVisitor(EntryFields))? {
                Shape::Map(raw) => Item::Map(Box::new(raw)),
                Shape::Null => Item::Other("null"),
                Shape::Other(shape) => Item::Other(shape),
            },
        )
    }
}

impl<'de> Deserialize<'de> for Vcs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VcsFields;

        impl<'de> MapReader<'de> for VcsFields {
            type Value = RawVcs;

            fn read<A: MapAccess<'de>>(self, mut map: A) -> Result<RawVcs, A::Error> {
                let mut vcs = RawVcs::default();
                while let Some(key) = next_key(&mut map)? {
                    let slot = match key.as_deref() {
                        Some("type") => &mut vcs.kind,
                        Some("url") => &mut vcs.url,
                        Some("branch") => &mut vcs.branch,
                        Some("remote_branch") => &mut vcs.remote_branch,
                        Some("tag") => &mut vcs.tag,
                        Some("commit") => &mut vcs.commit,
                        Some("repository_id") => &mut vcs.repository_id,
                        Some("github") => &mut vcs.github,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = text_value(&mut map)?;
                }
                Ok(vcs)
            }
        }

        Ok(
            match deserializer.deserialize_any(ShapeVisitor(VcsFields))? {
                Shape::Map(vcs) => Vcs::Map(vcs),
                Shape::Null => Vcs::Absent,
                Shape::Other(shape) => Vcs::NotMap(shape),
            },
        )
    }
}

/// Reads the entries of a mapping (the part of a visitor that differs).
trait MapReader<'de> {
    type Value;
    fn read<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error>;
}

/// What a node turned out to be: a mapping read by `R`, null, or something else
/// (consumed and named).
enum Shape<T> {
    Map(T),
    Null,
    Other(&'static str),
}

/// Accepts any node; hands mappings to the reader.
struct ShapeVisitor<R>(R);

impl<'de, R: MapReader<'de>> Visitor<'de> for ShapeVisitor<R> {
    type Value = Shape<R::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.read(map).map(Shape::Map)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Shape::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Shape::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other("a list"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Shape::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_i128<E>(self, _: i128) -> Result<Self::Value, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_u128<E>(self, _: u128) -> Result<Self::Value, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Shape::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Shape::Other("a string"))
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(Shape::Other("binary data"))
    }
}

/// A mapping key as text; `None` for a null or collection key (never one we use).
struct Key(Option<String>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }

            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(Some(v.to_owned())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_none<E>(self) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Key(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Key(None))
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}
