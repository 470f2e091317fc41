// The trainers' flags are shortcuts for config fields: the text is parsed later by the config
// schema (so a message names the field), but --help shows the field's own type and default.
import { FieldSpec, fieldType } from '../tuning/config-schema';
import { FlagSpec } from './args';

/** A shortcut flag for the config field `field`. */
export function schemaFlag(field: string, spec: FieldSpec): FlagSpec[string] {
  // A null default means "unset"; such fields' help says what happens then.
  const def = spec.default === null ? (/default/.test(spec.help) ? '' : ' (default none)') : ` (default ${JSON.stringify(spec.default)})`;
  return { type: 'string', default: '', value: fieldType(spec), help: `${field}: ${spec.help}${def}` };
}

/** `--set path=value`: taken off argv before parsing (takeSets); listed here so --help shows it. */
export const SET_FLAG: FlagSpec[string] = {
  type: 'string', default: '', value: 'path=value',
  help: 'set any config field (repeatable), e.g. --set objective.tau=0.5 (--help-config lists the fields)',
};
