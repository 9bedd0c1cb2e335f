/**
 * A configuration change over the control socket (`nodetgt target|lun|acl|account ...`): edit the raw
 * document (src/config/edit.ts), validate it with the normalizer, apply it to the running target
 * (deps.applyConfig), then write the file back atomically (src/config/write-back.ts).
 *
 * The file is written only once the running target took the whole change, so that the two never disagree:
 * a change that needs a restart or is refused leaves the file as it was, unless the operator asked for
 * saveOnly (write it for the next start, apply nothing now). Changes run one at a time: two at once would
 * each edit the same old file and the second would undo the first.
 */
import type { ChangeOutcome, ChangeRequest, ConfigChange, ControlAnswer } from '../admin/protocol';
import { applyChange, EditError, type EditContext } from '../config/edit';
import type { Config } from '../config/schema';
import type { ConfigSource } from '../config/source';
import { formatLike, holdsSecrets, writeFileAtomic } from '../config/write-back';
import { log } from '../util/log';
import type { ApplyConfig } from './apply';

export interface ChangeDeps {
  applyConfig: ApplyConfig;
  /** Absent: the target was started without one (embedded use, tests): changes are refused. */
  source?: ConfigSource;
  /** What edits need to know of the running target (sessions, LU sizes). */
  editContext(force: boolean): Promise<EditContext>;
  /** Replaceable in tests; writeFileAtomic otherwise. */
  writeFile?: typeof writeFileAtomic;
}

const KINDS: ReadonlySet<ConfigChange['kind']> = new Set([
  'target-add',
  'target-remove',
  'lun-add',
  'lun-remove',
  'lun-resize',
  'acl-add',
  'acl-remove',
  'account-add',
  'account-remove',
  'account-bind',
  'account-unbind',
  'alua-state',
]);

/** The change handler of one control server: requests are queued and run one after the other. */
export function changeHandler(deps: ChangeDeps): (req: ChangeRequest) => Promise<ControlAnswer> {
  let queue: Promise<unknown> = Promise.resolve();
  return (req) => {
    const run = queue.then(() => change(req, deps));
    queue = run.catch(() => undefined);
    return run;
  };
}

async function change(req: ChangeRequest, deps: ChangeDeps): Promise<ControlAnswer> {
  const c = req.change as Partial<ConfigChange> | undefined;
  if (!c || typeof c !== 'object' || !KINDS.has(c.kind as ConfigChange['kind']))
    return { ok: false, error: `unknown change ${JSON.stringify(c?.kind ?? null)}` };
  if (!deps.source) return { ok: false, error: 'this target takes no changes (started without a source)' };
  const src = await deps.source.read();
  let edit;
  let next: Config;
  try {
    edit = applyChange(src.raw, req.change, await deps.editContext(!!req.force));
    next = deps.source.build(edit.doc);
  } catch (e) {
    if (e instanceof EditError) return { ok: false, error: e.message };
    return { ok: false, error: `the change would make the configuration invalid: ${(e as Error).message}` };
  }
  const outcome: ChangeOutcome = {
    summary: edit.summary,
    applied: [],
    needsRestart: [],
    persisted: { not: '' },
    warnings: edit.warnings,
  };
  const save = async (file: string) => {
    const text = formatLike(edit.doc, src.text);
    await (deps.writeFile ?? writeFileAtomic)(file, text, holdsSecrets(edit.doc));
    outcome.persisted = { file };
  };
  if (req.saveOnly) {
    if (!src.file) return { ok: false, error: `--save-only: not persisted: ${src.notPersisted}` };
    await save(src.file);
    outcome.needsRestart = ['the whole change (--save-only): applied at the next start or SIGHUP'];
    log.info('configuration changed in the file only', { change: edit.summary, file: src.file });
    return { ok: true, change: outcome };
  }
  const report = await deps.applyConfig(next, { force: !!req.force, allOrNothing: true });
  outcome.applied = report.applied;
  outcome.needsRestart = report.needsRestart;
  if (report.refused !== undefined || report.needsRestart.length) {
    outcome.refused = report.refused;
    outcome.persisted = { not: 'not written: the running target did not take the change' };
    return { ok: true, change: outcome };
  }
  log.info('configuration changed live', { change: edit.summary, applied: report.applied.join('; ') });
  if (!src.file) {
    deps.source.keep(edit.doc);
    outcome.persisted = { not: `not persisted: ${src.notPersisted}` };
    return { ok: true, change: outcome };
  }
  try {
    await save(src.file);
  } catch (e) {
    log.error('configuration changed live but not saved', { file: src.file, error: (e as Error).message });
    return {
      ok: false,
      error:
        `applied live (${report.applied.join('; ') || edit.summary}) but not saved: ${(e as Error).message}; ` +
        'the running target and the file differ until the command is repeated with --save-only',
    };
  }
  return { ok: true, change: outcome };
}
