// Named ATen operators, resolved once on first use and called through the dispatcher.
import { native } from './native';

export type AtenFn = (...args: unknown[]) => any; // eslint-disable-line @typescript-eslint/no-explicit-any

function resolve(qualified: string): number {
  const dot = qualified.indexOf('.');
  const name = dot < 0 ? qualified : qualified.slice(0, dot);
  const overload = dot < 0 ? '' : qualified.slice(dot + 1);
  return native.findOp(`aten::${name}`, overload);
}

/** aten('add.Tensor') returns a caller of aten::add.Tensor taking handles and plain values. */
export function aten(qualified: string): AtenFn {
  let index = -1;
  return (...args: unknown[]) => {
    if (index < 0) index = resolve(qualified);
    return native.call(index, ...args);
  };
}

/** Like aten(), for in-place ops whose result aliases an argument the caller holds. */
export function atenVoid(qualified: string): (...args: unknown[]) => void {
  let index = -1;
  return (...args: unknown[]) => {
    if (index < 0) index = resolve(qualified);
    native.callVoid(index, ...args);
  };
}

/** Whether this libtorch has an operator (for version-dependent paths). */
export function hasOp(qualified: string): boolean {
  try {
    resolve(qualified);
    return true;
  } catch {
    return false;
  }
}

/** The schema string of an operator, e.g. for error messages and docs. */
export function schemaOf(qualified: string): string {
  return native.opSchema(resolve(qualified));
}
