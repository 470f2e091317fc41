// Tensor metadata, host <-> tensor copies and handle lifetime.
#include "handles.h"
#include <cstring>
#include <torch/csrc/autograd/function.h>

namespace difftune {
namespace {

at::ScalarType ToScalarType(const Napi::Value& v) {
  int64_t code = ToInt64(v, "dtype");
  if (code < 0 || code >= static_cast<int64_t>(at::ScalarType::NumOptions)) {
    throw Napi::RangeError::New(v.Env(), "dtype: unknown scalar type code " + std::to_string(code));
  }
  return static_cast<at::ScalarType>(code);
}

// fromBuffer(bytes: ArrayBufferView, shape, dtypeCode, device?) -> handle (copies the bytes).
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray()) {
      throw Napi::TypeError::New(env, "fromBuffer: expected a typed array");
    }
    auto view = info[0].As<Napi::TypedArray>();
    const uint8_t* data = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
    size_t byteLength = view.ByteLength();
    auto shape = ToIntVector(info[1], "fromBuffer shape");
    auto dtype = ToScalarType(info[2]);
    for (auto d : shape) {
      if (d < 0) throw Napi::RangeError::New(env, "fromBuffer: negative dimension in shape");
    }
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    size_t expected = t.numel() * t.element_size();
    if (expected != byteLength) {
      throw Napi::RangeError::New(env, "fromBuffer: shape and dtype need " + std::to_string(expected) +
                                           " bytes, got " + std::to_string(byteLength));
    }
    if (expected) std::memcpy(t.data_ptr(), data, expected);
    if (info.Length() > 3 && info[3].IsString()) {
      auto device = c10::Device(info[3].As<Napi::String>().Utf8Value());
      if (device != t.device()) t = t.to(device);
    }
    return WrapTensor(env, std::move(t));
  });
}

// toBuffer(handle) -> ArrayBuffer with the C-contiguous bytes (copied from any device).
Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    at::Tensor t = UnwrapTensor(info[0], "toBuffer");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    size_t n = c.numel() * c.element_size();
    auto buf = Napi::ArrayBuffer::New(info.Env(), n);
    if (n) std::memcpy(buf.Data(), c.data_ptr(), n);
    return buf;
  });
}

Napi::Value Shape(const Napi::CallbackInfo& info) {
  return FromIntArray(info.Env(), UnwrapTensor(info[0], "shape").sizes());
}

Napi::Value Strides(const Napi::CallbackInfo& info) {
  return FromIntArray(info.Env(), UnwrapTensor(info[0], "strides").strides());
}

Napi::Value DType(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<int>(UnwrapTensor(info[0], "dtype").scalar_type()));
}

Napi::Value DeviceOf(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), UnwrapTensor(info[0], "device").device().str());
}

Napi::Value Item(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    at::Tensor& t = UnwrapTensor(info[0], "item");
    c10::Scalar s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(info.Env(), static_cast<double>(s.toLong()));
    return Napi::Number::New(info.Env(), s.toDouble());
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  ReleaseHandle(info[0]);
  return info.Env().Undefined();
}

Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), FindHolder(info[0]) == nullptr);
}

Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), UnwrapTensor(info[0], "requiresGrad").requires_grad());
}

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    UnwrapTensor(info[0], "setRequiresGrad").set_requires_grad(info[1].ToBoolean().Value());
    return info.Env().Undefined();
  });
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), UnwrapTensor(info[0], "grad").grad());
}

// setGrad(handle, gradHandle | null): null clears the gradient (like `p.grad = None`).
Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    at::Tensor& t = UnwrapTensor(info[0], "setGrad");
    if (info[1].IsNull() || info[1].IsUndefined()) t.mutable_grad() = at::Tensor();
    else t.mutable_grad() = UnwrapTensor(info[1], "setGrad");
    return info.Env().Undefined();
  });
}

Napi::Value IsLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), UnwrapTensor(info[0], "isLeaf").is_leaf());
}

Napi::Value RetainGrad(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    UnwrapTensor(info[0], "retainGrad").retain_grad();
    return info.Env().Undefined();
  });
}

Napi::Value GradFnName(const Napi::CallbackInfo& info) {
  const auto& fn = UnwrapTensor(info[0], "gradFn").grad_fn();
  if (!fn) return info.Env().Null();
  return Napi::String::New(info.Env(), fn->name());
}

// Two handles see the same memory (used by tests of views and in-place ops).
Napi::Value SameStorage(const Napi::CallbackInfo& info) {
  auto& a = UnwrapTensor(info[0], "sameStorage");
  auto& b = UnwrapTensor(info[1], "sameStorage");
  return Napi::Boolean::New(info.Env(), a.has_storage() && b.has_storage() && a.storage().is_alias_of(b.storage()));
}

Napi::Value LiveTensors(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(LiveTensorHandles()));
}

}  // namespace

void RegisterTensorApi(Napi::Env env, Napi::Object exports) {
  exports.Set("fromBuffer", Napi::Function::New(env, FromBuffer));
  exports.Set("toBuffer", Napi::Function::New(env, ToBuffer));
  exports.Set("shape", Napi::Function::New(env, Shape));
  exports.Set("strides", Napi::Function::New(env, Strides));
  exports.Set("dtype", Napi::Function::New(env, DType));
  exports.Set("device", Napi::Function::New(env, DeviceOf));
  exports.Set("item", Napi::Function::New(env, Item));
  exports.Set("dispose", Napi::Function::New(env, Dispose));
  exports.Set("isDisposed", Napi::Function::New(env, IsDisposed));
  exports.Set("requiresGrad", Napi::Function::New(env, RequiresGrad));
  exports.Set("setRequiresGrad", Napi::Function::New(env, SetRequiresGrad));
  exports.Set("grad", Napi::Function::New(env, Grad));
  exports.Set("setGrad", Napi::Function::New(env, SetGrad));
  exports.Set("isLeaf", Napi::Function::New(env, IsLeaf));
  exports.Set("retainGrad", Napi::Function::New(env, RetainGrad));
  exports.Set("gradFn", Napi::Function::New(env, GradFnName));
  exports.Set("sameStorage", Napi::Function::New(env, SameStorage));
  exports.Set("liveTensors", Napi::Function::New(env, LiveTensors));
}

}  // namespace difftune
