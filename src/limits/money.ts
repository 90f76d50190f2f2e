/** USD amounts as integer units of 0.0001 USD, the precision of Runblob's price strings ("0.1200"). */

const UNITS_PER_USD = 10_000;
const DECIMAL_USD = /^(\d{1,12})(?:\.(\d{1,12}))?$/;

/** Parses a decimal USD string; returns undefined for anything else. Digits past the fourth decimal round up. */
export function usdToUnits(value: string): number | undefined {
  const match = DECIMAL_USD.exec(value.trim());
  if (match === null) return undefined;
  const fraction = match[2] ?? "";
  const roundUp = /[1-9]/.test(fraction.slice(4)) ? 1 : 0;
  return Number(match[1]) * UNITS_PER_USD + Number(fraction.slice(0, 4).padEnd(4, "0")) + roundUp;
}

/** Formats units as a decimal USD string with 4 decimals, such as "0.1200". */
export function formatUnits(units: number): string {
  const whole = Math.floor(units / UNITS_PER_USD);
  return `${whole}.${String(units % UNITS_PER_USD).padStart(4, "0")}`;
}
