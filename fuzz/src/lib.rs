//! lookout's fuzz targets: one per parser fed from outside (src/harness.rs), each a binary
//! that is an AFL++ persistent-mode target when built by `cargo afl build` (`--cfg fuzzing`)
//! and a replayer of files otherwise ([`replay::main`]).

pub mod harness;
pub mod replay;

/// The `main` of a fuzz target binary: `lookout_fuzz::target!(remote_sample);`.
#[macro_export]
macro_rules! target {
    ($name:ident) => {
        #[cfg(fuzzing)]
        fn main() {
            let scratch = $crate::replay::fuzz_scratch(stringify!($name));
            afl::fuzz!(|data: &[u8]| {
                $crate::harness::$name(data, &scratch);
            });
        }

        #[cfg(not(fuzzing))]
        fn main() {
            std::process::exit($crate::replay::main(
                stringify!($name),
                $crate::harness::$name,
            ));
        }
    };
}
