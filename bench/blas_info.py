"""Which BLAS serves PyTorch's float matmuls in this process: the file the dynamic linker resolved
sgemm_ to, named the way difftune's addon names it (src/torch/blas.ts), so bench ratios compare
like with like. Import after torch."""
import ctypes
import os

RTLD_NOLOAD = 4


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _loaded(name_part):
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if name_part in os.path.basename(path):
                return path
    return None


def _symbol(lib, name):
    try:
        return getattr(lib, name)
    except AttributeError:
        return None


def blas_info():
    """{library, vendor, parallel, threads, config} like the addon's blasInfo()."""
    out = {"library": "", "vendor": "unknown", "parallel": "unknown", "threads": -1, "config": ""}
    torch_cpu = _loaded("libtorch_cpu") or _loaded("libtorch")
    if not torch_cpu:
        return out
    sgemm = _symbol(ctypes.CDLL(torch_cpu, mode=RTLD_NOLOAD), "sgemm_")
    if sgemm is None:
        return out
    info = _DlInfo()
    libc = ctypes.CDLL(None)
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if not libc.dladdr(ctypes.cast(sgemm, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return out
    fname = info.dli_fname.decode()
    library = os.path.realpath(fname)
    out["library"] = library
    blas = ctypes.CDLL(fname, mode=RTLD_NOLOAD)
    get_config = _symbol(blas, "openblas_get_config")
    if get_config is not None:
        get_config.restype = ctypes.c_char_p
        out["vendor"], out["config"] = "openblas", get_config().decode()
        p = blas.openblas_get_parallel()
        out["parallel"] = {0: "sequential", 1: "pthreads", 2: "openmp"}.get(p, "unknown")
        out["threads"] = blas.openblas_get_num_threads()
    elif "/blis-" in library:
        out["vendor"] = "blis"
        out["parallel"] = "openmp" if "/blis-openmp/" in library else "pthreads" if "/blis-pthread/" in library else "sequential"
    elif _symbol(blas, "mkl_get_version_string") is not None:
        out["vendor"] = "mkl"
    elif "/blas/libblas.so" in library:
        out.update(vendor="reference", parallel="sequential", threads=1)
    return out


def describe_blas(i=None):
    """One line: vendor (threading, N threads) file -- the format of describeBlas in src/torch/blas.ts."""
    i = i or blas_info()
    threads = f", {i['threads']} thread{'' if i['threads'] == 1 else 's'}" if i["threads"] > 0 else ""
    return f"{i['vendor']} ({i['parallel']}{threads}) {i['library'] or 'no sgemm_ loaded'}"
