# Sourced by the device scripts (gpu_sitting.sh, recall_sitting.sh), in the directory they run in: installs the
# carried wheels (.whl/, from scripts/offline_wheels.sh) into /tmp/site where there are any, and puts them and
# the working directory on PYTHONPATH; exits 2 when the install fails.
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "$(basename "$0"): installing the carried wheels failed" >&2; exit 2; }
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
