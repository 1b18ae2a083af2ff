//! Positions in bundle files: byte offsets to line and column, and where each
//! policy statement of a `.cedar` file starts.
//!
//! The `cedar-policy` API does not expose a policy's source location, but it
//! numbers a file's statements in source order, so the n-th statement found
//! here is the n-th policy Cedar parsed.

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before
        .get(line_start..)
        .map_or(0, |prefix| prefix.chars().count())
        + 1;
    (line, column)
}

/// Byte offsets where each `;`-terminated statement of a Cedar policy file
/// starts, skipping whitespace, comments and string contents.
pub(crate) fn statement_starts(text: &str) -> Vec<usize> {
    #[derive(PartialEq)]
    enum State {
        Code,
        Str,
        StrEscape,
        Comment,
    }
    let mut starts = Vec::new();
    let mut in_statement = false;
    let mut state = State::Code;
    let mut chars = text.char_indices().peekable();
    while let Some((offset, ch)) = chars.next() {
        match state {
            State::Comment => {
                if ch == '\n' {
                    state = State::Code;
                }
            }
            State::Str => match ch {
                '\\' => state = State::StrEscape,
                '"' => state = State::Code,
                _ => {}
            },
            State::StrEscape => state = State::Str,
            State::Code => {
                if ch == '/' && chars.peek().is_some_and(|(_, next)| *next == '/') {
                    state = State::Comment;
                    continue;
                }
                if ch.is_whitespace() {
                    continue;
                }
                if !in_statement {
                    starts.push(offset);
                    in_statement = true;
                }
                match ch {
                    '"' => state = State::Str,
                    ';' => in_statement = false,
                    _ => {}
                }
            }
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_statements_past_comments_and_strings() {
        let text = "// a; comment\n@id(\"x;\\\"y\")\npermit(principal, action, resource);\n  forbid(principal, action, resource) // c;\n;";
        let starts = statement_starts(text);
        let positions: Vec<(usize, usize)> = starts
            .iter()
            .map(|offset| line_column(text, *offset))
            .collect();
        assert_eq!(positions, vec![(2, 1), (4, 3)]);
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("é\nüx", 5), (2, 2));
        assert_eq!(line_column("abc", 0), (1, 1));
    }
}
