// A data table: columns are { key, label, render?(row), class? }. On a phone width each
// row becomes a card whose cells carry their column label (data-label, see style.css).
export function Table({ columns, rows, rowKey, caption, empty = "Nothing to show.", busy = false }) {
  return (
    <div class="table-wrap">
      <table class="table" aria-busy={busy ? "true" : "false"}>
        {caption && <caption>{caption}</caption>}
        <thead>
          <tr>
            {columns.map((column) => (
              <th scope="col" key={column.key} class={column.class}>
                {column.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr>
              <td class="table-empty" colSpan={columns.length}>
                {busy ? "Loading…" : empty}
              </td>
            </tr>
          ) : (
            rows.map((row) => (
              <tr key={rowKey(row)}>
                {columns.map((column) => (
                  <td key={column.key} class={column.class} data-label={column.label}>
                    {column.render ? column.render(row) : row[column.key]}
                  </td>
                ))}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}
