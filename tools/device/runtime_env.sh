# runtime_env.sh — sourced (not run) on the GPU machine by the device-side
# scripts (tools/device/cuda_run.sh, tools/study/gpu_study.sh), from the repo
# root: unpacks the Debian runtime packages that machine lacks (.devrt/,
# filled by tools/device/prepare.sh) into /tmp/devrt, puts them and CUDA's
# libraries on LD_LIBRARY_PATH, and keeps OpenMP's idle threads from spinning.
if ls .devrt/*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/devrt
  for f in .devrt/*.deb; do dpkg -x "$f" /tmp/devrt; done
  export LD_LIBRARY_PATH=/tmp/devrt/usr/lib/x86_64-linux-gnu:/tmp/devrt/usr/lib/x86_64-linux-gnu/openblas-openmp:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
fi
export OMP_WAIT_POLICY=PASSIVE
