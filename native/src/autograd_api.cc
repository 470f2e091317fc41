// Autograd entry points and the thread-local modes (grad mode, autocast).
#include "handles.h"
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#define DIFFTUNE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace difftune {
namespace {

std::vector<at::Tensor> ToTensorVector(const Napi::Value& v, const char* what) {
  std::vector<at::Tensor> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an array of tensors");
  auto arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value item = arr.Get(i);
    // A null entry means "no gradient given" (a default of ones for scalars, as in Python).
    out.push_back(item.IsNull() || item.IsUndefined() ? at::Tensor() : UnwrapTensor(item, what));
  }
  return out;
}

// backward(tensors, grads | undefined, retainGraph, createGraph)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    auto tensors = ToTensorVector(info[0], "backward");
    auto grads = ToTensorVector(info[1], "backward gradients");
    bool create = info[3].ToBoolean().Value();
    c10::optional<bool> retain;
    if (info[2].IsBoolean()) retain = info[2].As<Napi::Boolean>().Value();
    torch::autograd::backward(tensors, grads, retain, create);
    return info.Env().Undefined();
  });
}

// grad(outputs, inputs, gradOutputs | undefined, retainGraph, createGraph, allowUnused) -> (handle|null)[]
Napi::Value Grad(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    auto outputs = ToTensorVector(info[0], "grad outputs");
    auto inputs = ToTensorVector(info[1], "grad inputs");
    auto gradOutputs = ToTensorVector(info[2], "grad gradOutputs");
    c10::optional<bool> retain;
    if (info[3].IsBoolean()) retain = info[3].As<Napi::Boolean>().Value();
    bool create = info[4].ToBoolean().Value();
    bool allowUnused = info[5].ToBoolean().Value();
    auto grads = torch::autograd::grad(outputs, inputs, gradOutputs, retain, create, allowUnused);
    auto arr = Napi::Array::New(info.Env(), grads.size());
    for (size_t i = 0; i < grads.size(); ++i) arr.Set(static_cast<uint32_t>(i), WrapTensor(info.Env(), grads[i]));
    return arr;
  });
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool previous = at::GradMode::is_enabled();
  at::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), previous);
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}

c10::DeviceType AutocastDevice(const Napi::Value& v) {
  std::string name = v.As<Napi::String>().Utf8Value();
  if (name == "cuda") return c10::DeviceType::CUDA;
  if (name == "cpu") return c10::DeviceType::CPU;
  throw Napi::Error::New(v.Env(), "autocast: device type must be 'cuda' or 'cpu', got '" + name + "'");
}

// setAutocast(deviceType, enabled, dtypeCode) -> [previousEnabled, previousDtypeCode]
Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    auto device = AutocastDevice(info[0]);
    bool enabled = info[1].ToBoolean().Value();
    auto dtype = static_cast<at::ScalarType>(ToInt64(info[2], "autocast dtype"));
    bool previous;
    at::ScalarType previousDtype;
#if DIFFTUNE_TORCH_AT_LEAST(2, 4)
    previous = at::autocast::is_autocast_enabled(device);
    previousDtype = at::autocast::get_autocast_dtype(device);
    at::autocast::set_autocast_enabled(device, enabled);
    at::autocast::set_autocast_dtype(device, dtype);
#else
    if (device == c10::DeviceType::CUDA) {
      previous = at::autocast::is_enabled();
      previousDtype = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_enabled(enabled);
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      previous = at::autocast::is_cpu_enabled();
      previousDtype = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_cpu_enabled(enabled);
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
#endif
    auto out = Napi::Array::New(info.Env(), 2);
    out.Set(0u, Napi::Boolean::New(info.Env(), previous));
    out.Set(1u, Napi::Number::New(info.Env(), static_cast<int>(previousDtype)));
    return out;
  });
}

// Entering/leaving an autocast region; leaving the outermost drops the cached casts of
// weights, as Python's torch.autocast does.
Napi::Value AutocastEnter(const Napi::CallbackInfo& info) {
  at::autocast::increment_nesting();
  return info.Env().Undefined();
}

Napi::Value AutocastExit(const Napi::CallbackInfo& info) {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  return info.Env().Undefined();
}

}  // namespace

void RegisterAutogradApi(Napi::Env env, Napi::Object exports) {
  exports.Set("backward", Napi::Function::New(env, Backward));
  exports.Set("autogradGrad", Napi::Function::New(env, Grad));
  exports.Set("setGradEnabled", Napi::Function::New(env, SetGradEnabled));
  exports.Set("isGradEnabled", Napi::Function::New(env, IsGradEnabled));
  exports.Set("setAutocast", Napi::Function::New(env, SetAutocast));
  exports.Set("autocastEnter", Napi::Function::New(env, AutocastEnter));
  exports.Set("autocastExit", Napi::Function::New(env, AutocastExit));
}

}  // namespace difftune
