import type { Logger } from '../logger.ts';

/**
 * What the service has opened, in the order it opened it: shutdown closes it in the reverse order,
 * so each part closes while the parts it uses are still open. A closer that fails is logged and
 * the rest still close.
 */
export function createClosers(logger: Logger) {
  const closers: { name: string; close: () => Promise<void> }[] = [];
  return {
    add(name: string, close: () => Promise<void>): void {
      closers.push({ name, close });
    },
    async closeAll(): Promise<void> {
      for (const closer of closers.reverse()) {
        try {
          await closer.close();
        } catch (error) {
          logger.error({ err: error, component: closer.name }, 'error while closing');
        }
      }
    },
  };
}

export type Closers = ReturnType<typeof createClosers>;
