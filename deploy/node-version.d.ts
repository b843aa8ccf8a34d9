/** Types of deploy/node-version.js (plain JavaScript: it runs before anything else is loaded). */
export declare const MIN_NODE: readonly [number, number];
/** null when `version` (default: the running Node.js) is new enough, else a message naming what is needed. */
export declare function nodeTooOld(version?: string): string | null;
