# Sourced by benches/wrk.sh and benches/flame.sh: the prescale config both benchmark through.
# proxy_config FILE LISTEN ADMIN BACKEND — one endpoint `bench` on `/` to a static pool of BACKEND.
proxy_config() {
  cat > "$1" <<EOT
[listen]
addr = "$2"
[admin]
addr = "$3"
[[endpoint]]
name = "bench"
path_prefix = "/"
pool = "be"
[[pool]]
name = "be"
members = ["$4"]
EOT
}
