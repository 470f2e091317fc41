// Which BLAS serves libtorch's float matmuls (sgemm_), and its thread pool. Debian's libtorch
// links libblas.so.3, which the alternatives system points at the reference BLAS, OpenBLAS or
// BLIS; the reference one is ~15x slower, so callers need to know which one they got.
#include "handles.h"
#include <ATen/Version.h>
#include <dlfcn.h>
#include <climits>
#include <cstdlib>

namespace difftune {
namespace {

// The loaded library that defines sgemm_, opened again (RTLD_NOLOAD) to look up its own symbols:
// another BLAS can be loaded beside it (Debian's liblapack.so.3 may pull in OpenBLAS while
// libblas.so.3 is the reference one), so the process-wide namespace would misname it.
void* SgemmLibrary(std::string* file, std::string* library) {
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info where;
  if (!sgemm || !dladdr(sgemm, &where) || !where.dli_fname) return nullptr;
  *file = where.dli_fname;
  char real[PATH_MAX];
  *library = realpath(where.dli_fname, real) ? real : *file;
  return dlopen(where.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
}

template <typename Fn>
Fn Symbol(void* handle, const char* name) {
  return handle ? reinterpret_cast<Fn>(dlsym(handle, name)) : nullptr;
}

// blasInfo() -> {library, file, vendor, config, parallel, threads}
//   library: the file the dynamic linker resolved sgemm_ to (symlinks resolved), "" if none;
//   vendor: 'openblas' | 'blis' | 'mkl' | 'reference' | 'unknown';
//   parallel: 'sequential' | 'pthreads' | 'openmp' | 'unknown'; threads: the pool size, -1 unknown.
Napi::Value BlasInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto out = Napi::Object::New(env);
  std::string file, library;
  void* blas = SgemmLibrary(&file, &library);
  out.Set("file", file);
  out.Set("library", library);
  std::string vendor = "unknown", parallel = "unknown", config;
  int threads = -1;
  if (auto getConfig = Symbol<char* (*)()>(blas, "openblas_get_config")) {
    vendor = "openblas";
    config = getConfig();
    if (auto getParallel = Symbol<int (*)()>(blas, "openblas_get_parallel")) {
      int p = getParallel();
      parallel = p == 0 ? "sequential" : p == 1 ? "pthreads" : p == 2 ? "openmp" : "unknown";
    }
    if (auto getThreads = Symbol<int (*)()>(blas, "openblas_get_num_threads")) threads = getThreads();
  } else if (auto version = Symbol<const char* (*)()>(blas, "bli_info_get_version_str")) {
    vendor = "blis";
    config = std::string("BLIS ") + version();
    auto pthreads = Symbol<bool (*)()>(blas, "bli_info_get_enable_pthreads");
    auto openmp = Symbol<bool (*)()>(blas, "bli_info_get_enable_openmp");
    parallel = openmp && openmp() ? "openmp" : pthreads && pthreads() ? "pthreads" : "sequential";
    if (auto getThreads = Symbol<int64_t (*)()>(blas, "bli_thread_get_num_threads")) threads = static_cast<int>(getThreads());
  } else if (library.find("/blis-") != std::string::npos) {
    vendor = "blis";  // Debian's BLIS libblas.so.3 exports only the BLAS interface: name it by its folder
    parallel = library.find("/blis-openmp/") != std::string::npos ? "openmp"
             : library.find("/blis-pthread/") != std::string::npos ? "pthreads" : "sequential";
  } else if (Symbol<void*>(blas, "mkl_get_version_string")) {
    vendor = "mkl";
  } else if (library.empty() && at::show_config().find("BLAS_INFO=mkl") != std::string::npos) {
    vendor = "mkl";  // PyTorch's own builds link MKL statically: no sgemm_ to resolve, but libtorch says so
    parallel = "openmp";
    library = "(linked into libtorch)";
  } else if (!library.empty() && library.find("/blas/libblas.so") != std::string::npos) {
    vendor = "reference";  // netlib's, as Debian installs it: single-threaded, unblocked loops
    parallel = "sequential";
    threads = 1;
  }
  if (blas) dlclose(blas);  // drops the extra reference RTLD_NOLOAD took; the library stays loaded
  out.Set("vendor", vendor);
  out.Set("config", config);
  out.Set("parallel", parallel);
  out.Set("threads", threads);
  return out;
}

// The BLAS's own thread pool, which at::set_num_threads does not reach (OpenBLAS's pthreads
// build, BLIS). Returns false when the BLAS has no such setting.
Napi::Value SetBlasThreads(const Napi::CallbackInfo& info) {
  int n = static_cast<int>(ToInt64(info[0], "setBlasThreads"));
  std::string file, library;
  void* blas = SgemmLibrary(&file, &library);
  struct Close { void* h; ~Close() { if (h) dlclose(h); } } close{blas};
  if (auto openblas = Symbol<void (*)(int)>(blas, "openblas_set_num_threads")) {
    openblas(n);
    return Napi::Boolean::New(info.Env(), true);
  }
  if (auto blis = Symbol<void (*)(int64_t)>(blas, "bli_thread_set_num_threads")) {
    blis(n);
    return Napi::Boolean::New(info.Env(), true);
  }
  return Napi::Boolean::New(info.Env(), false);
}

}  // namespace

void RegisterBlasApi(Napi::Env env, Napi::Object exports) {
  exports.Set("blasInfo", Napi::Function::New(env, BlasInfo));
  exports.Set("setBlasThreads", Napi::Function::New(env, SetBlasThreads));
}

}  // namespace difftune
