# Sourced by the benchmarks from the repository root: sets bin to the criox binary they
# measure. That is CRIOX_BIN when given; otherwise the build that hack/run and hack/install
# ship (`cargo build --profile dist`), brought up to date with the source here.
if [ -z "${CRIOX_BIN:-}" ]; then
  cargo build --profile dist -q --bin criox
  CRIOX_BIN=$PWD/target/x86_64-unknown-linux-gnu/dist/criox
fi
bin=$CRIOX_BIN
