//! Diagnostics: every problem found in a `lab.toml`, with file, line, column,
//! the field path (`nodes[4].mac`) and what to do about it.

use std::cell::OnceCell;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A path to a field in the inventory, printed as `nodes[4].mac`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// A path of dotted keys, e.g. `FieldPath::of("network.cidr")`.
    pub fn of(dotted: &str) -> Self {
        Self(
            dotted
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| Segment::Key(s.to_owned()))
                .collect(),
        )
    }

    /// This path with a key appended.
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }

    /// This path with an array index appended.
    pub fn idx(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }

    /// The segments of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Segment::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("(document)")?;
        }
        Ok(())
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The inventory is refused.
    Error,
    /// The inventory loads, but probably not as the user meant
    /// (`bootlab check --strict` refuses it).
    Warning,
}

/// The source line a diagnostic points into, for the caret display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    /// The line's text (no newline).
    pub text: String,
    /// The byte range inside `text` the caret underlines (may be empty).
    pub span: Range<usize>,
}

/// One problem in an inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file as the user named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The field the problem is about.
    pub path: FieldPath,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: String,
    /// The line of the file it points at, when the position is known.
    pub source: Option<SourceLine>,
}

impl Diagnostic {
    /// The diagnostic as cargo prints one: a title, `--> file:line:col`,
    /// the source line with a caret under the field, and the help.
    /// `color` adds ANSI styles (for terminals).
    pub fn render(&self, color: bool) -> String {
        use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = format!("{}: {}", self.path, self.message);
        let file = self.file.display().to_string();
        let origin = format!("{file}:{}:{}", self.line, self.column);
        let mut group = annotate_snippets::Group::with_title(level.primary_title(title.as_str()));
        if let Some(src) = &self.source {
            let span = if src.span.is_empty() {
                // Point at one character (or the line's end).
                let s = src.span.start.min(src.text.len());
                let e = src.text[s..].chars().next().map_or(s, |c| s + c.len_utf8());
                s..e
            } else {
                src.span.clone()
            };
            group = group.element(
                Snippet::source(src.text.as_str())
                    .line_start(self.line)
                    .path(file.as_str())
                    .annotation(AnnotationKind::Primary.span(span)),
            );
        } else {
            group = group.element(annotate_snippets::Origin::path(origin.as_str()));
        }
        if !self.help.is_empty() {
            group = group.element(Level::HELP.message(self.help.as_str()));
        }
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        renderer.render(&[group])
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// All problems found in one inventory file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The problems, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every problem rendered (see [`Diagnostic::render`]), then a summary line.
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.render(color));
            out.push_str("\n\n");
        }
        let errors = self
            .0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let warnings = self.0.len() - errors;
        let file = self
            .0
            .first()
            .map(|d| d.file.display().to_string())
            .unwrap_or_default();
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let summary = match (errors, warnings) {
            (e, 0) => plural(e, "error"),
            (0, w) => plural(w, "warning"),
            (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
        };
        out.push_str(&format!("{summary} in {file}"));
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

/// The candidate closest to `wrong`, when one is close enough to be what
/// the user meant (cargo's "did you mean" rule of thumb: a small edit
/// distance relative to the length).
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let w = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&w, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d > 0 && *d <= (w.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Maps field paths and byte offsets of one source text to line and column.
///
/// The spanned document is parsed on the first diagnostic, not up front:
/// an inventory without errors or warnings never needs it (at 10,000 nodes
/// the parse was 15% of loading and an 11 MB document).
pub(crate) struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    doc: OnceCell<Option<toml_edit::Document<&'a str>>>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            doc: OnceCell::new(),
        }
    }

    /// The spanned document (None when the text is not TOML).
    fn doc(&self) -> Option<&toml_edit::Document<&'a str>> {
        self.doc
            .get_or_init(|| toml_edit::Document::parse(self.text).ok())
            .as_ref()
    }

    /// The file name diagnostics carry.
    pub(crate) fn file(&self) -> &Path {
        self.file
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let mut offset = offset;
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// The span of the field at `path`, or of its nearest ancestor that exists.
    pub(crate) fn span_of(&self, path: &FieldPath) -> Option<Range<usize>> {
        let doc = self.doc()?;
        let mut item = doc.as_item();
        let mut best = None;
        let mut prefix = FieldPath::root();
        for seg in path.segments() {
            let next = match seg {
                Segment::Key(k) => item.get(k.as_str()),
                Segment::Index(i) => item.get(*i),
            };
            let Some(next) = next else { break };
            item = next;
            prefix.0.push(seg.clone());
            // A value's own span; for a table, the span of its key.
            let span = if item.is_value() {
                item.span()
            } else {
                self.key_span(&prefix).or_else(|| item.span())
            };
            if span.is_some() {
                best = span;
            }
        }
        best
    }

    /// The span of the last key of `path` inside its parent table (used for
    /// tables, whose own span may be absent).
    fn key_span(&self, path: &FieldPath) -> Option<Range<usize>> {
        let doc = self.doc()?;
        let segs = path.segments();
        let (last, parent) = segs.split_last()?;
        let Segment::Key(k) = last else { return None };
        let mut item = doc.as_item();
        for seg in parent {
            item = match seg {
                Segment::Key(k) => item.get(k.as_str())?,
                Segment::Index(i) => item.get(*i)?,
            };
        }
        let table = item.as_table_like()?;
        let (key, _) = table.get_key_value(k)?;
        key.span()
    }

    /// A diagnostic located at `path`.
    pub(crate) fn at(&self, path: &FieldPath, message: String, help: &str) -> Diagnostic {
        self.at_span(self.span_of(path), path.clone(), message, help)
    }

    /// A diagnostic located at a byte span.
    pub(crate) fn at_span(
        &self,
        span: Option<Range<usize>>,
        path: FieldPath,
        message: String,
        help: &str,
    ) -> Diagnostic {
        let (line, column) = span.as_ref().map_or((1, 1), |s| self.line_col(s.start));
        Diagnostic {
            severity: Severity::Error,
            file: self.file.to_path_buf(),
            line,
            column,
            path,
            message,
            help: help.to_owned(),
            source: span.map(|s| self.source_line(s)),
        }
    }

    /// The line holding `span.start`, with the part of `span` on that line.
    fn source_line(&self, span: Range<usize>) -> SourceLine {
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let text = self.text[line_start..line_end].trim_end_matches('\r');
        // A span may start on the line's trimmed '\r' (CRLF files).
        let text_end = line_start + text.len();
        let start = start.min(text_end);
        let mut end = span.end.clamp(start, text_end);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        SourceLine {
            text: text.to_owned(),
            span: (start - line_start)..(end - line_start),
        }
    }

    /// The field path of the innermost key or value whose span holds `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> FieldPath {
        let Some(doc) = self.doc() else {
            return FieldPath::root();
        };
        let mut path = FieldPath::root();
        let mut item = doc.as_item();
        loop {
            if let Some(t) = item.as_table_like() {
                let hit = t.iter().find(|(k, v)| {
                    t.get_key_value(k)
                        .and_then(|(key, _)| key.span())
                        .is_some_and(|s| s.contains(&offset))
                        || item_contains(v, offset)
                });
                match hit {
                    Some((k, v)) => {
                        path = path.key(k);
                        item = v;
                    }
                    None => return path,
                }
            } else if let Some(aot) = item.as_array_of_tables() {
                match aot.iter().position(|t| table_contains(t, offset)) {
                    Some(i) => {
                        path = path.idx(i);
                        match item.get(i) {
                            Some(next) => item = next,
                            None => return path,
                        }
                    }
                    None => return path,
                }
            } else if let Some(arr) = item.as_array() {
                match arr
                    .iter()
                    .position(|v| v.span().is_some_and(|s| s.contains(&offset)))
                {
                    Some(i) => {
                        path = path.idx(i);
                        match item.get(i) {
                            Some(next) if next.as_table_like().is_some() => item = next,
                            _ => return path,
                        }
                    }
                    None => return path,
                }
            } else {
                return path;
            }
        }
    }
}

fn item_contains(item: &toml_edit::Item, offset: usize) -> bool {
    if item.span().is_some_and(|s| s.contains(&offset)) {
        return true;
    }
    if let Some(t) = item.as_table() {
        return table_contains(t, offset);
    }
    if let Some(aot) = item.as_array_of_tables() {
        return aot.iter().any(|t| table_contains(t, offset));
    }
    false
}

fn table_contains(t: &toml_edit::Table, offset: usize) -> bool {
    t.span().is_some_and(|s| s.contains(&offset))
        || t.iter().any(|(k, v)| {
            t.key(k)
                .and_then(|key| key.span())
                .is_some_and(|s| s.contains(&offset))
                || item_contains(v, offset)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_at_in_array_of_tables() {
        let text = "[lab]\nname = \"x\"\n\n[[nodes]]\nname = \"a\"\n\n[[nodes]]\nname = \"b\"\nmacc = \"x\"\n";
        let map = SourceMap::new(Path::new("t"), text);
        let at = text.find("macc").unwrap();
        assert_eq!(map.path_at(at).to_string(), "nodes[1].macc");
        let at = text.find("\"b\"").unwrap();
        assert_eq!(map.path_at(at).to_string(), "nodes[1].name");
    }
}
