//! Bar or plain lines, colour or not: the one decision every progress
//! display follows.

use std::sync::OnceLock;

/// `--color`: when to use colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorChoice {
    /// colour on a terminal, unless NO_COLOR is set (to anything non-empty)
    #[default]
    Auto,
    /// colour even when stderr is not a terminal (never in JSON)
    Always,
    /// no colour
    Never,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live line redrawn in place (stderr is a terminal).
    Bar {
        /// Colour in the bar.
        color: bool,
    },
    /// A plain line now and then, no cursor movement.
    Plain {
        /// Colour in the lines (only with `--color always`).
        color: bool,
    },
}

impl Mode {
    /// Whether colour is used.
    pub fn color(self) -> bool {
        match self {
            Mode::Bar { color } | Mode::Plain { color } => color,
        }
    }
}

/// What the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// stderr is a terminal.
    pub stderr_tty: bool,
    /// `TERM` unset or `dumb`: a terminal that cannot redraw a line (and
    /// where indicatif would draw nothing at all).
    pub dumb_term: bool,
    /// `--color` (or vmbuild.toml's `color`).
    pub color: ColorChoice,
    /// `NO_COLOR` is set and not empty (<https://no-color.org>).
    pub no_color: bool,
    /// `--log-format json`: every line is an event, never a live line.
    pub json: bool,
}

/// The decision: a live bar only on a terminal that can redraw and not
/// for JSON; colour when asked (`always` beats `NO_COLOR`, as a flag
/// given for this run should), on a colour terminal by default, never in
/// JSON.
pub fn decide(i: Inputs) -> Mode {
    let live = i.stderr_tty && !i.dumb_term && !i.json;
    let color = !i.json
        && match i.color {
            ColorChoice::Never => false,
            ColorChoice::Always => true,
            ColorChoice::Auto => live && !i.no_color,
        };
    if live {
        Mode::Bar { color }
    } else {
        Mode::Plain { color }
    }
}

impl Inputs {
    /// The inputs from this process (its stderr and environment).
    pub fn from_env(color: ColorChoice, json: bool) -> Inputs {
        use std::io::IsTerminal;
        Inputs {
            stderr_tty: std::io::stderr().is_terminal(),
            dumb_term: console::is_dumb(),
            color,
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            json,
        }
    }
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Decides the mode for this process (once, from `main`) and tells the
/// terminal-styling library whether to colour.
pub fn init(color: ColorChoice, json: bool) -> Mode {
    let m = *MODE.get_or_init(|| decide(Inputs::from_env(color, json)));
    console::set_colors_enabled(m.color());
    console::set_colors_enabled_stderr(m.color());
    m
}

/// The mode [`init`] decided (or, before it, the default for this
/// process's stderr).
pub fn mode() -> Mode {
    *MODE.get_or_init(|| decide(Inputs::from_env(ColorChoice::Auto, false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColorChoice::{Always, Auto, Never};

    fn d(stderr_tty: bool, color: ColorChoice, no_color: bool, json: bool) -> Mode {
        decide(Inputs {
            stderr_tty,
            dumb_term: false,
            color,
            no_color,
            json,
        })
    }

    #[test]
    fn a_live_bar_needs_a_terminal_and_no_json() {
        assert_eq!(d(true, Auto, false, false), Mode::Bar { color: true });
        assert_eq!(d(false, Auto, false, false), Mode::Plain { color: false });
        assert_eq!(d(true, Auto, false, true), Mode::Plain { color: false });
        let dumb = decide(Inputs {
            stderr_tty: true,
            dumb_term: true,
            color: Auto,
            no_color: false,
            json: false,
        });
        assert_eq!(dumb, Mode::Plain { color: false });
    }

    #[test]
    fn colour_follows_the_flag_then_no_color_and_never_enters_json() {
        // NO_COLOR and --color never keep the bar but drop its colour.
        assert_eq!(d(true, Auto, true, false), Mode::Bar { color: false });
        assert_eq!(d(true, Never, false, false), Mode::Bar { color: false });
        // --color always wins over NO_COLOR, and colours plain lines too.
        assert_eq!(d(true, Always, true, false), Mode::Bar { color: true });
        assert_eq!(d(false, Always, false, false), Mode::Plain { color: true });
        // JSON is never coloured, whatever was asked.
        for c in [Auto, Always, Never] {
            for tty in [true, false] {
                assert_eq!(d(tty, c, false, true), Mode::Plain { color: false });
            }
        }
    }
}
