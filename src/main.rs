//! The `prescale` binary: everything is in the library's [`prescale::cli`].

fn main() -> std::process::ExitCode {
    prescale::cli::main()
}
