// Which state-dict names each parameter-efficient method trains. DiffFit and BitFit select by name,
// as the Diff-Tuning code does (`'bias' in name or 'norm' in name or 'gamma' in name or 'y_embed' in name`).

/** The class-label table (including the null row), trained with a new label space. */
export const LABEL_TABLE = 'y_embedder.embedding_table.weight';

/** The fixed sin-cos position table: a parameter only so it is saved, never trained. */
export const POS_EMBED = 'pos_embed';

export function isLabelTable(name: string): boolean {
  return name.includes('y_embed');
}

/** DiffFit as the Diff-Tuning fork: biases, norms (DiT's LayerNorms have none), gammas, label table. */
export function isDiffFitParameter(name: string): boolean {
  if (name === POS_EMBED) return false;
  return name.includes('bias') || name.includes('norm') || name.includes('gamma') || isLabelTable(name);
}

/** BitFit: bias terms only. */
export function isBitFitParameter(name: string): boolean {
  return name.includes('bias');
}
