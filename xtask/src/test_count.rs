//! Counting tests from `cargo test` output.
//!
//! libtest ends every test binary (unit tests, integration tests and the doc
//! tests of each crate) with a summary such as
//!
//! ```text
//! test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
//! ```
//!
//! The release gate adds up those summaries and compares the number of
//! passed tests with a floor kept in `xtask/test-count-min.txt`, so that a
//! change which silently stops tests from running (a lost `mod tests;`, a
//! feature gate, a renamed test target) fails the gate instead of passing it.

/// Totals accumulated from libtest summary lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestTotals {
    /// Sum of the `N passed` numbers.
    pub passed: u64,
    /// Sum of the `N failed` numbers.
    pub failed: u64,
    /// Number of summary lines seen (one per test binary or doc-test run).
    pub suites: u64,
}

impl TestTotals {
    /// Folds one line of `cargo test` output into the totals.
    ///
    /// Lines that are not libtest summaries are ignored.
    pub fn observe(&mut self, line: &str) {
        let Some(rest) = line.trim_start().strip_prefix("test result:") else {
            return;
        };
        self.suites += 1;
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            for pair in words.windows(2) {
                let Ok(count) = pair[0].parse::<u64>() else {
                    continue;
                };
                match pair[1] {
                    "passed" => self.passed = self.passed.saturating_add(count),
                    "failed" => self.failed = self.failed.saturating_add(count),
                    _ => {}
                }
            }
        }
    }
}

/// Parses the contents of `xtask/test-count-min.txt`: a single non-negative
/// integer, surrounding whitespace allowed.
pub fn parse_minimum(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    trimmed
        .parse::<u64>()
        .map_err(|_| format!("expected a single non-negative integer, found {trimmed:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_passed_and_failed_across_summaries() {
        let output = "\
running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests coalestra_core
test result: FAILED. 7 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.20s
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
        let mut totals = TestTotals::default();
        output.lines().for_each(|line| totals.observe(line));
        assert_eq!(
            totals,
            TestTotals {
                passed: 10,
                failed: 2,
                suites: 3
            }
        );
    }

    #[test]
    fn ignores_lines_that_merely_mention_results() {
        let mut totals = TestTotals::default();
        totals.observe("test test_result_passed ... ok");
        totals.observe("println: 5 passed");
        assert_eq!(totals, TestTotals::default());
    }

    #[test]
    fn minimum_is_a_single_integer() {
        assert_eq!(parse_minimum("0\n"), Ok(0));
        assert_eq!(parse_minimum("  250  "), Ok(250));
        assert!(parse_minimum("").is_err());
        assert!(parse_minimum("-1").is_err());
        assert!(parse_minimum("12 tests").is_err());
    }
}
