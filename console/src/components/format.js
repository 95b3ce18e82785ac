// Small formatting helpers shared by the tasks, monitoring and Things pages.

/** A date (ISO text, epoch ms or Date) in the user's locale; "" when absent. */
export function formatTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** A byte count as "12.3 KB" (powers of 1024, as the console's usage reports count). */
export function formatBytes(bytes) {
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

/** A number with at most `digits` decimals, without trailing zeros. */
export function formatNumber(value, digits = 3) {
  if (typeof value !== "number" || !Number.isFinite(value)) return String(value ?? "");
  return String(Number(value.toFixed(digits)));
}

/** The text to show for a failed call (ApiError.describe() when it is one). */
export function describeError(error) {
  return typeof error?.describe === "function" ? error.describe() : String(error?.message ?? error);
}

/** "1 sample", "3 samples". */
export const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;
