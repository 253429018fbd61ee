// Fava dashboards of the general ledger (the fava-dashboards extension; ledger-engine's
// `init` copies this file beside ledger.beancount, and `pip install '.[fava]'` installs Fava
// with the extension).  Every panel is one bean-query statement on the GL; income is
// negative in Beancount, so revenue is shown negated.  tests/test_fava.py runs each
// statement through Fava's own query endpoint.
import { defineConfig } from "fava-dashboards";

const REVENUE = `SELECT year, month, root(account, 4) AS account, neg(sum(number)) AS value
  WHERE account ~ '^Income:AI:Revenue:' GROUP BY year, month, account ORDER BY year, month, account`;
const ALLOWANCES = `SELECT year, month, account, sum(number) AS value
  WHERE account ~ '^Income:AI:Allowance:' GROUP BY year, month, account ORDER BY year, month, account`;
const WALLET_MOVEMENTS = `SELECT year, month, entry_meta('kind') AS kind, neg(sum(number)) AS value
  WHERE account = 'Liabilities:Customers:Wallets' GROUP BY year, month, kind ORDER BY year, month, kind`;
const WALLET_LIABILITY = `SELECT year, month, neg(sum(number)) AS value
  WHERE account = 'Liabilities:Customers:Wallets' GROUP BY year, month ORDER BY year, month`;
const BREAKAGE = `SELECT year, month, neg(sum(number)) AS value
  WHERE account = 'Income:Wallet:Breakage' GROUP BY year, month ORDER BY year, month`;
const CHANNELS = `SELECT year, month, account, neg(sum(number)) AS value
  WHERE account ~ '^Income:Channels:' GROUP BY year, month, account ORDER BY year, month, account`;

type Row = { year: number; month: number; value: number; [key: string]: string | number };

function monthOf(row: Row): string {
  return `${row.year}-${String(row.month).padStart(2, "0")}`;
}

function months(rows: Row[]): string[] {
  return [...new Set(rows.map(monthOf))].sort();
}

function lastPart(name: string): string {
  return name.split(":").slice(-1)[0];
}

// One bar series per value of `key` (an account or a kind), one bar per month.
function barsBy(rows: Row[], key: string, stack?: string, sign = 1) {
  const labels = months(rows);
  const names = [...new Set(rows.map((row) => String(row[key])))];
  return {
    labels,
    series: names.map((name) => ({
      type: "bar",
      name: lastPart(name),
      stack,
      data: labels.map((label) =>
        rows
          .filter((row) => String(row[key]) === name && monthOf(row) === label)
          .reduce((sum, row) => sum + sign * Number(row.value), 0),
      ),
    })),
  };
}

function chart(labels: string[], series: object[]) {
  return {
    tooltip: { trigger: "axis" },
    legend: { top: "bottom" },
    xAxis: { type: "category", data: labels },
    yAxis: { type: "value" },
    series,
  };
}

// A panel of bars: one series per value of `key`, stacked, one bar per month.
function stackedBars(title: string, bql: string, key: string, width: string, height: string) {
  return {
    title,
    width,
    height,
    kind: "echarts",
    spec: async ({ ledger }) => {
      const bars = barsBy(await ledger.query(bql), key, key);
      return chart(bars.labels, bars.series);
    },
  };
}

export default defineConfig({
  dashboards: [
    {
      name: "AI revenue",
      panels: [
        {
          title: "AI revenue by feature (gross) beside the allowances given away",
          width: "100%",
          height: "420px",
          link: "../../income_statement/",
          kind: "echarts",
          spec: async ({ ledger }) => {
            const gross = barsBy(await ledger.query(REVENUE), "account", "gross");
            const given = barsBy(await ledger.query(ALLOWANCES), "account", "allowances");
            const labels = [...new Set([...gross.labels, ...given.labels])].sort();
            return chart(labels, [
              ...gross.series,
              ...given.series.map((s) => ({ ...s, name: `${s.name} (allowance)` })),
            ]);
          },
        },
        stackedBars("Other channels paid from the wallet", CHANNELS, "account", "50%", "320px"),
        {
          title: "Breakage (expired paid credit)",
          width: "50%",
          height: "320px",
          kind: "echarts",
          spec: async ({ ledger }) => {
            const rows: Row[] = await ledger.query(BREAKAGE);
            return chart(months(rows), [{ type: "bar", name: "Breakage", data: rows.map((r) => r.value) }]);
          },
        },
      ],
    },
    {
      name: "Wallet",
      panels: [
        {
          title: "Wallet liability at month end",
          width: "50%",
          height: "360px",
          link: "../../balance_sheet/",
          kind: "echarts",
          spec: async ({ ledger }) => {
            const rows: Row[] = await ledger.query(WALLET_LIABILITY);
            let owed = 0;
            const data = rows.map((row) => (owed += Number(row.value)));
            return chart(months(rows), [{ type: "line", name: "Owed to customers", data }]);
          },
        },
        stackedBars("Wallet roll-forward: movements by kind", WALLET_MOVEMENTS, "kind", "50%", "360px"),
      ],
    },
  ],
});
