// Building Coiote searchCriteria text (the grammar is in core/search_criteria.py).

/** A quoted text value: quotes inside are doubled. */
export const quote = (text) => `'${text.replaceAll("'", "''")}'`;

/** searchCriteria with one more condition, joined with `and` (an `or` is bracketed first). */
export function addCondition(criteria, condition) {
  const current = criteria.trim();
  if (!current) return condition;
  return /\bor\b/i.test(current) ? `(${current}) and ${condition}` : `${current} and ${condition}`;
}
