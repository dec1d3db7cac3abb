//! The SIP Interconnect gateway binary.
//!
//! Not yet: the REST surface, sessions and the bridge are open issues. This
//! binary says so instead of pretending to serve.

fn main() {
    eprintln!(
        "sip-interconnect gateway: not yet runnable.\n\
         What exists today is the `sip-signaling` crate; try\n\
         `cargo run -p sip-call -- sip:user@127.0.0.1:5060` to dial a SIP URI."
    );
    std::process::exit(2);
}
