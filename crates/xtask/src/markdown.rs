//! Markdown (the subset docs/ uses) -> man(7) roff, for lab.toml(5).
//!
//! pulldown-cmark parses; this module only writes roff: `##` -> `.SH`,
//! `###` -> `.SS`, paragraphs -> `.PP`, code blocks -> `.nf` blocks,
//! lists -> `.IP \(bu`, and tables -> one `.TP` entry per row (the first
//! column as the tag, the other columns as `header: value` lines), which
//! reads better on a terminal than tbl(1) tables and needs no preprocessor.
//! Inline code is bold, emphasis italic; links keep their text. Every
//! character that roff treats specially is escaped, non-ASCII characters
//! become `\[uXXXX]`, so groff renders the page without warnings (tested).

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// What the page is called and where it belongs.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// Page name (`lab.toml`).
    pub name: &'a str,
    /// Manual section (`5`).
    pub section: &'a str,
    /// One line for the NAME section.
    pub summary: &'a str,
    /// Footer source (`bootlab 0.1.0`).
    pub source: &'a str,
    /// Header manual name (`File Formats`).
    pub manual: &'a str,
    /// Pages for SEE ALSO, as `name(section)`.
    pub see_also: &'a [&'a str],
}

/// Escapes text for roff (not at the start of a line: see [`Roff::text`]).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", c as u32)),
        }
    }
    out
}

/// A roff writer that keeps requests on their own lines.
#[derive(Debug, Default)]
struct Roff {
    out: String,
    /// The next text starts a line.
    line_start: bool,
    /// Fonts in force (`R` at the bottom).
    fonts: Vec<char>,
}

impl Roff {
    fn new() -> Self {
        Self {
            out: String::new(),
            line_start: true,
            fonts: vec!['R'],
        }
    }

    /// A request line (`.SH NAME`).
    fn request(&mut self, line: &str) {
        if !self.line_start {
            self.out.push('\n');
        }
        self.out.push_str(line);
        self.out.push('\n');
        self.line_start = true;
    }

    /// Running text; newlines become line breaks in the source (filled).
    fn text(&mut self, text: &str) {
        for (i, piece) in text.split('\n').enumerate() {
            if i > 0 && !self.line_start {
                self.out.push('\n');
                self.line_start = true;
            }
            let piece = if self.line_start {
                piece.trim_start()
            } else {
                piece
            };
            if piece.is_empty() {
                continue;
            }
            if self.line_start && (piece.starts_with('.') || piece.starts_with('\'')) {
                self.out.push_str("\\&");
            }
            self.out.push_str(&escape(piece));
            self.line_start = false;
        }
    }

    /// Raw roff inline (font escapes).
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
        self.line_start = false;
    }

    fn push_font(&mut self, f: char) {
        self.fonts.push(f);
        self.raw(&format!("\\f{f}"));
    }

    fn pop_font(&mut self) {
        self.fonts.pop();
        let f = *self.fonts.last().unwrap_or(&'R');
        self.raw(&format!("\\f{f}"));
    }

    /// A literal block, line by line.
    fn literal(&mut self, text: &str) {
        self.request(".PP");
        self.request(".RS 4");
        self.request(".nf");
        for line in text.trim_end_matches('\n').split('\n') {
            if line.is_empty() {
                self.request(".sp");
                continue;
            }
            let mut l = String::new();
            if line.starts_with('.') || line.starts_with('\'') || line.starts_with(' ') {
                l.push_str("\\&");
            }
            l.push_str(&escape(line));
            self.request(&l);
        }
        self.request(".fi");
        self.request(".RE");
    }
}

/// Where inline output goes: the page, or a table cell being collected.
#[derive(Debug, Default)]
struct Table {
    head: Vec<String>,
    row: Vec<String>,
    in_head: bool,
}

/// Converts `markdown` to a man page.
pub fn to_man(markdown: &str, page: &Page<'_>) -> String {
    let mut r = Roff::new();
    r.request(&format!(
        ".TH {} {} \"\" \"{}\" \"{}\"",
        page.name.to_uppercase(),
        page.section,
        escape(page.source),
        escape(page.manual)
    ));
    r.request(".SH NAME");
    r.text(&format!("{} - {}", page.name, page.summary));
    r.request(".SH DESCRIPTION");

    let mut table: Option<Table> = None;
    // Inline output while inside a table cell goes to a separate writer.
    let mut cell = Roff::new();
    let mut skip_heading = false;
    // A `##`/`###` heading's text, collected for its `.SH`/`.SS` line.
    let mut heading: Option<(&'static str, Roff)> = None;
    let mut code_block: Option<String> = None;
    let mut first_para_in_item = false;

    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(markdown, opts) {
        if let Event::End(TagEnd::Heading(_)) = event {
            skip_heading = false;
            if let Some((req, h)) = heading.take() {
                let text = h.out.trim().replace('"', "\\(dq");
                r.request(&format!("{req} \"{text}\""));
            }
            continue;
        }
        let w: &mut Roff = match (&mut heading, table.is_some()) {
            (Some((_, h)), _) => h,
            (None, true) => &mut cell,
            (None, false) => &mut r,
        };
        match event {
            Event::Start(Tag::Heading { level, .. }) => match level {
                HeadingLevel::H1 => skip_heading = true,
                HeadingLevel::H2 => heading = Some((".SH", Roff::new())),
                _ => heading = Some((".SS", Roff::new())),
            },
            Event::Start(Tag::Paragraph) => {
                if first_para_in_item {
                    first_para_in_item = false;
                } else if !w.out.ends_with(".PP\n") {
                    w.request(".PP");
                }
            }
            Event::End(TagEnd::Paragraph) => {}
            Event::Start(Tag::CodeBlock(_)) => code_block = Some(String::new()),
            Event::End(TagEnd::CodeBlock) => {
                if let Some(text) = code_block.take() {
                    w.literal(&text);
                }
            }
            Event::Start(Tag::List(_)) => {}
            Event::End(TagEnd::List(_)) => w.request(".PP"),
            Event::Start(Tag::Item) => {
                w.request(".IP \\(bu 2");
                first_para_in_item = true;
            }
            Event::End(TagEnd::Item) => first_para_in_item = false,
            Event::Start(Tag::Table(_)) => table = Some(Table::default()),
            Event::End(TagEnd::Table) => {
                table = None;
                r.request(".PP");
            }
            Event::Start(Tag::TableHead) => {
                if let Some(t) = table.as_mut() {
                    t.in_head = true;
                }
            }
            Event::End(TagEnd::TableHead) => {
                if let Some(t) = table.as_mut() {
                    t.in_head = false;
                    t.head = std::mem::take(&mut t.row);
                }
            }
            Event::Start(Tag::TableRow) => {}
            Event::End(TagEnd::TableRow) => {
                if let Some(t) = table.as_mut() {
                    let row = std::mem::take(&mut t.row);
                    emit_row(&mut r, &t.head, &row);
                }
            }
            Event::Start(Tag::TableCell) => cell = Roff::new(),
            Event::End(TagEnd::TableCell) => {
                if let Some(t) = table.as_mut() {
                    let text = std::mem::take(&mut cell.out);
                    t.row.push(text.trim().to_owned());
                }
            }
            Event::Start(Tag::Emphasis) => w.push_font('I'),
            Event::Start(Tag::Strong) => w.push_font('B'),
            Event::End(TagEnd::Emphasis | TagEnd::Strong) => w.pop_font(),
            Event::Start(Tag::Link { .. }) | Event::End(TagEnd::Link) => {}
            // The H1 is the page's title: its text is dropped.
            Event::Text(_) | Event::Code(_) | Event::SoftBreak if skip_heading => {}
            Event::Text(t) => match code_block.as_mut() {
                Some(code) => code.push_str(&t),
                None => w.text(&t),
            },
            Event::Code(t) => {
                w.push_font('B');
                w.text(&t);
                w.pop_font();
            }
            Event::SoftBreak => w.text("\n"),
            Event::HardBreak => w.request(".br"),
            Event::Rule => w.request(".PP"),
            _ => {}
        }
    }
    if !page.see_also.is_empty() {
        r.request(".SH SEE ALSO");
        let refs: Vec<String> = page
            .see_also
            .iter()
            .map(|p| match p.split_once('(') {
                Some((n, s)) => format!("\\fB{}\\fR({s}", escape(n)),
                None => escape(p),
            })
            .collect();
        r.raw(&refs.join(", "));
        r.out.push('\n');
    }
    tidy(&r.out)
}

/// One table row as a `.TP` entry: the first cell as the tag, each other
/// non-empty cell as `header: value`.
fn emit_row(r: &mut Roff, head: &[String], row: &[String]) {
    let Some((tag, rest)) = row.split_first() else {
        return;
    };
    r.request(".TP");
    r.raw(tag);
    r.out.push('\n');
    r.line_start = true;
    let mut first = true;
    for (i, value) in rest.iter().enumerate() {
        if value.is_empty() {
            continue;
        }
        if !first {
            r.request(".br");
        }
        first = false;
        match head.get(i + 1).filter(|h| !h.is_empty()) {
            Some(h) if !h.eq_ignore_ascii_case("notes") => r.raw(&format!("{h}: {value}")),
            _ => r.raw(value),
        }
        r.out.push('\n');
        r.line_start = true;
    }
}

/// Drops `.PP` requests that would only add space (twice in a row, or
/// right before a section heading).
fn tidy(roff: &str) -> String {
    let lines: Vec<&str> = roff.lines().collect();
    let mut out = String::with_capacity(roff.len());
    for (i, line) in lines.iter().enumerate() {
        if *line == ".PP" {
            let prev = if i == 0 { "" } else { lines[i - 1] };
            if prev.starts_with(".SH") || prev.starts_with(".SS") {
                continue;
            }
            let next = lines.get(i + 1).copied().unwrap_or(".SH");
            if next.starts_with(".PP")
                || next.starts_with(".SH")
                || next.starts_with(".SS")
                || next.starts_with(".TP")
                || next.starts_with(".IP")
            {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: Page<'static> = Page {
        name: "t.toml",
        section: "5",
        summary: "a test",
        source: "t 1",
        manual: "File Formats",
        see_also: &["t(1)"],
    };

    #[test]
    fn headings_paragraphs_code_and_escapes() {
        let md = "# Title\n\nIntro with `--flag` and a \\\\ back\\slash.\n\n## `[lab]`\n\n.starts with a dot\n\n```\nname = \"x\"\n.dot\n```\n";
        let out = to_man(md, &PAGE);
        assert!(
            out.starts_with(".TH T.TOML 5 \"\" \"t 1\" \"File Formats\"\n"),
            "{out}"
        );
        assert!(out.contains(".SH NAME\nt.toml \\- a test\n"), "{out}");
        assert!(
            out.contains("Intro with \\fB\\-\\-flag\\fR and a \\e back\\eslash."),
            "{out}"
        );
        assert!(out.contains(".SH \"\\fB[lab]\\fR\"\n"), "{out}");
        assert!(out.contains("\\&.starts with a dot"), "{out}");
        assert!(out.contains(".nf\nname = \"x\"\n\\&.dot\n.fi"), "{out}");
        assert!(!out.contains("Title"), "the H1 is the page title: {out}");
        assert!(out.ends_with(".SH SEE ALSO\n\\fBt\\fR(1)\n"), "{out}");
    }

    #[test]
    fn tables_become_tagged_paragraphs() {
        let md = "## x\n\n| key | default | notes |\n|---|---|---|\n| `cidr` | required | IPv4 ≤ /30 |\n| `mode` | `nat` | |\n";
        let out = to_man(md, &PAGE);
        assert!(
            out.contains(".TP\n\\fBcidr\\fR\ndefault: required\n.br\nIPv4 \\[u2264] /30\n"),
            "{out}"
        );
        assert!(
            out.contains(".TP\n\\fBmode\\fR\ndefault: \\fBnat\\fR\n"),
            "{out}"
        );
    }

    #[test]
    fn lists_are_bulleted() {
        let out = to_man("- one\n- two `x`\n", &PAGE);
        assert!(
            out.contains(".IP \\(bu 2\none\n.IP \\(bu 2\ntwo \\fBx\\fR\n"),
            "{out}"
        );
    }
}
