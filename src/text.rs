//! Printing text that came from a user (spec text, ticket and file names, notes, link
//! targets, reasons quoting them) where other people read it: terminals, tables and the
//! journal. [`printable`] is the one escaping function, like `ls -b` or Postfix's
//! `printable()`: a member's note must not move another member's cursor, clear their
//! screen, fake a line of its own (`\nowner alice`) or reverse the text after it
//! (U+202E). `--json` output keeps exact strings: JSON escapes control characters itself
//! and a program reading it wants the real bytes.

use std::borrow::Cow;

/// `s` with every character that could steer a terminal or the reading order escaped
/// visibly: C0 controls and DEL (`\n`, `\r`, `\t`, `\e` for ESC, else `\xHH`), C1
/// controls, the Unicode line and paragraph separators, and the bidi marks, embeddings,
/// overrides and isolates (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) as
/// `\u{HHHH}`. A backslash is doubled, so an escape in the output always means one in
/// the input. Unchanged text is returned borrowed.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// [`printable`] without doubling backslashes: for log lines, whose fields are often
/// already escaped by `Debug` (`spec="a\u{1b}"`), where doubling would only garble them.
pub fn printable_log(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

fn escape(s: &str, backslash: bool) -> Cow<'_, str> {
    let needs = |c: char| needs_escape(c) && (backslash || c != '\\');
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs(c) {
            out.push(c);
            continue;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// Does `s` print as itself on one line (nothing [`printable`] would escape but `\`)?
/// What intake requires of a note.
pub fn is_printable_line(s: &str) -> bool {
    !s.chars().any(|c| c != '\\' && needs_escape(c))
}

fn needs_escape(c: char) -> bool {
    matches!(c,
        '\\'
        | '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{061c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_visibly_and_plain_text_is_kept() {
        assert!(matches!(printable("hdf5 +mpi ^zlib@1.3"), Cow::Borrowed(_)));
        assert_eq!(printable("é ü 日本"), "é ü 日本");
        assert_eq!(printable("a\x1b[2Jb"), "a\\e[2Jb");
        assert_eq!(printable("x\nowner alice"), "x\\nowner alice");
        assert_eq!(printable("a\rb\tc\x07\x00\x7f"), "a\\rb\\tc\\x07\\x00\\x7f");
        assert_eq!(printable("\u{9b}2J"), "\\u{009b}2J");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        for c in [
            '\u{200e}', '\u{200f}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{2028}',
        ] {
            assert!(!printable(&c.to_string()).contains(c), "{c:?}");
        }
        assert_eq!(printable("a\\nb"), "a\\\\nb");
        assert!(is_printable_line(
            "for the climate group (ticket #4) \\o/ é"
        ));
        for bad in ["a\nb", "a\tb", "\x1b[1m", "abc\u{202e}", "\u{85}"] {
            assert!(!is_printable_line(bad), "{bad:?}");
        }
        assert_eq!(printable_log("a\\u{1b}\x1b"), "a\\u{1b}\\e");
    }
}
