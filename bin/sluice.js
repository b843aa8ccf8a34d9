#!/usr/bin/env node
// Loader for the `sluice` command: registers tsx so the TypeScript sources run directly.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
