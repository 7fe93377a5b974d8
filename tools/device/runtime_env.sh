# runtime_env.sh — sourced (not run) on the GPU machine by the device-side
# scripts (tools/device/cuda_run.sh, tools/study/gpu_study.sh), from the repo
# root: unpacks the Debian runtime packages that machine lacks (.devrt/,
# filled by tools/device/prepare.sh) into /tmp/devrt, puts them and CUDA's
# libraries on LD_LIBRARY_PATH, keeps OpenMP's idle threads from spinning, and
# keeps NVLink multicast off in NCCL (the device tool's README: a program that
# uses it can take the host's shared GPUs out of service).
if ls .devrt/*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/devrt
  for f in .devrt/*.deb; do dpkg -x "$f" /tmp/devrt; done
  export LD_LIBRARY_PATH=/tmp/devrt/usr/lib/x86_64-linux-gnu:/tmp/devrt/usr/lib/x86_64-linux-gnu/openblas-openmp:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
fi
export OMP_WAIT_POLICY=PASSIVE
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
