// difftune's native binding: a thin layer over libtorch (tensors, ops, autograd, runtime).
#include "handles.h"

namespace difftune {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  RegisterTensorApi(env, exports);
  RegisterDispatchApi(env, exports);
  RegisterAutogradApi(env, exports);
  RegisterRuntimeApi(env, exports);
  RegisterBlasApi(env, exports);
  return exports;
}

NODE_API_MODULE(difftune, Init)

}  // namespace difftune
