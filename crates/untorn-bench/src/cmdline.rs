//! The benchmarks' command lines: `--name [value]` options, read and refused alike in every
//! benchmark, without a dependency.

use crate::units::parse_size;
use crate::Res;
use std::error::Error;
use std::str::FromStr;

/// A command line being read option by option. Every error carries the benchmark's usage line,
/// so that a typo shows at once what is accepted.
pub struct CmdLine<'a> {
    args: std::slice::Iter<'a, String>,
    usage: &'a str,
}

impl<'a> CmdLine<'a> {
    /// `args` without the program name; `usage` is printed by [`help`](Self::help) and ends
    /// every error message.
    pub fn new(args: &'a [String], usage: &'a str) -> CmdLine<'a> {
        CmdLine {
            args: args.iter(),
            usage,
        }
    }

    /// The next argument (an option's name), `None` at the end.
    pub fn next_arg(&mut self) -> Option<&'a str> {
        self.args.next().map(String::as_str)
    }

    /// The value of option `name`: the argument after it.
    pub fn value(&mut self, name: &str) -> Res<String> {
        let usage = self.usage;
        self.args
            .next()
            .cloned()
            .ok_or_else(|| format!("{name} needs a value\n{usage}").into())
    }

    /// The value of option `name`, parsed; a bad value fails with the parser's own message.
    pub fn parse<T>(&mut self, name: &str) -> Res<T>
    where
        T: FromStr,
        T::Err: Error + 'static,
    {
        Ok(self.value(name)?.parse()?)
    }

    /// The value of option `name` as a comma-separated list of sizes (`1K,64M`, see
    /// [`parse_size`]).
    pub fn sizes(&mut self, name: &str) -> Res<Vec<usize>> {
        self.value(name)?.split(',').map(parse_size).collect()
    }

    /// `-h` / `--help`: prints the usage on stdout and exits with success.
    pub fn help(&self) -> ! {
        println!("{}", self.usage);
        std::process::exit(0)
    }

    /// The error for an argument that no option of the benchmark matches.
    pub fn unknown(&self, arg: &str) -> Box<dyn Error> {
        format!("unknown argument '{arg}'\n{}", self.usage).into()
    }

    /// The value of the required option `name`, if it was given.
    pub fn required<T>(&self, value: Option<T>, name: &str) -> Res<T> {
        value.ok_or_else(|| format!("{name} is required\n{}", self.usage).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_errors() {
        let args: Vec<String> = ["--rounds", "7", "--sizes", "1K,2M", "--dir"]
            .map(String::from)
            .to_vec();
        let mut c = CmdLine::new(&args, "usage: x");
        assert_eq!(c.next_arg(), Some("--rounds"));
        assert_eq!(c.parse::<usize>("--rounds").unwrap(), 7);
        assert_eq!(c.next_arg(), Some("--sizes"));
        assert_eq!(c.sizes("--sizes").unwrap(), vec![1024, 2 << 20]);
        assert_eq!(c.next_arg(), Some("--dir"));
        let e = c.value("--dir").unwrap_err().to_string();
        assert_eq!(e, "--dir needs a value\nusage: x");
        assert_eq!(c.next_arg(), None);
        assert_eq!(
            c.unknown("-q").to_string(),
            "unknown argument '-q'\nusage: x"
        );
        let e = c.required(None::<u8>, "--dir").unwrap_err().to_string();
        assert_eq!(e, "--dir is required\nusage: x");
    }
}
