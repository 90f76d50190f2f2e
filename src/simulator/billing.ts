/**
 * Prices and the account balance of the simulated Runblob account.
 *
 * Amounts are kept as integer units of 0.0001 USD, the precision of Runblob's
 * decimal strings ("0.1200"), so repeated charges never pick up float errors.
 */

import { z } from "zod";

const UNITS_PER_USD = 10_000;

/** A balance in USD, bounded so that it stays exact as an integer number of units. */
export const balanceUsdSchema = z.number().min(0).max(Math.floor(Number.MAX_SAFE_INTEGER / UNITS_PER_USD));

/** Price of one generation by duration in seconds, in units of 0.0001 USD. */
const PRICE_UNITS_BY_DURATION: Readonly<Record<10 | 15, number>> = {
  10: 1_200,
  15: 1_800,
};

/** Converts USD to units of 0.0001 USD, rounding to the nearest unit. */
export function usdToUnits(usd: number): number {
  return Math.round(usd * UNITS_PER_USD);
}

/** Formats units of 0.0001 USD as Runblob's decimal string with 4 digits, e.g. `0.1200`. */
export function formatUsd(units: number): string {
  const sign = units < 0 ? "-" : "";
  const absolute = Math.abs(units);
  const whole = Math.floor(absolute / UNITS_PER_USD);
  const fraction = String(absolute % UNITS_PER_USD).padStart(4, "0");
  return `${sign}${whole}.${fraction}`;
}

/** Returns the price of a generation in units of 0.0001 USD. */
export function priceUnits(durationSeconds: 10 | 15): number {
  return PRICE_UNITS_BY_DURATION[durationSeconds];
}

export class Balance {
  private units: number;

  constructor(usd: number) {
    this.units = usdToUnits(usd);
  }

  /** Subtracts `units` and returns true, or returns false and leaves the balance unchanged when it is too low. */
  charge(units: number): boolean {
    if (this.units < units) return false;
    this.units -= units;
    return true;
  }

  set(usd: number): void {
    this.units = usdToUnits(usd);
  }

  /** Formats the balance as Runblob's decimal string, e.g. `12.3400`. */
  format(): string {
    return formatUsd(this.units);
  }
}
