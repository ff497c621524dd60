//! corral-shim: see `corral::shim`. Started by corrald, never by hand.

fn main() {
    let args = match corral::shim::ShimArgs::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("corral-shim: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(corral::shim::run(args));
}
