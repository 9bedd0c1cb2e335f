/**
 * A target's `alua` setting: several nodetgt processes (gateways) export the same target IQN and the same LUs,
 * and each says which target port group it is and what every group's asymmetric access state is (SPC-4 5.15,
 * implicit ALUA only: the states come from the configuration, never from SET TARGET PORT GROUPS).
 *
 *   "alua": { "localGroup": 1, "groups": [ { "id": 1, "state": "active-optimized" },
 *                                          { "id": 2, "state": "standby" } ] }
 *
 * One nodetgt process is one SCSI target port (one target portal group tag), so a gateway is one relative target
 * port. A group lists the relative target port identifiers of its gateways in `ports`, by default [id] (one
 * gateway per group, the usual layout); `port` says which one this process is, by default the local group's only
 * port. Every gateway carries the same `groups`; only `localGroup` (and `port`) differ.
 *
 * The LUs of such a target must look like one device on every path, so each needs the operator's `serial` (the
 * same on every gateway); its NAA designator, unless given, is derived from the target name and that serial
 * (sharedNaa), not generated at random per state directory as for a single node.
 */
import { createHash } from 'node:crypto';
import { asObject, checkKeys, fail, optBool, optInt } from './validate';

/** Asymmetric access states an operator may give a group (SPC-4 table "ASYMMETRIC ACCESS STATE field"). */
export const ALUA_STATES = [
  'active-optimized',
  'active-non-optimized',
  'standby',
  'unavailable',
  'transitioning',
] as const;
export type AluaState = (typeof ALUA_STATES)[number];

export interface AluaGroupConfig {
  /** TARGET PORT GROUP (0..65535). */
  id: number;
  state: AluaState;
  /** RELATIVE TARGET PORT IDENTIFIERs of the gateways in the group (1..65535; 0 is reserved). */
  ports: number[];
  /** PREF: the group is a preferred one (a host's multipath may favour it among equals). */
  preferred: boolean;
}

export interface AluaConfig {
  /** This gateway's target port group. */
  localGroup: number;
  /** This gateway's relative target port identifier (one of its group's ports). */
  port: number;
  groups: AluaGroupConfig[];
}

const GROUP_KEYS = ['id', 'state', 'ports', 'preferred'];

function normalizeGroup(raw: unknown, where: string): AluaGroupConfig {
  const g = asObject(raw, where);
  checkKeys(g, GROUP_KEYS, where);
  const id = optInt(g, 'id', -1, 0, 0xffff, where);
  if (id < 0) fail(where, "'id' is required (the target port group, 0 to 65535)");
  if (typeof g.state !== 'string' || !(ALUA_STATES as readonly string[]).includes(g.state))
    fail(where, `'state' must be one of ${ALUA_STATES.join(', ')}`);
  let ports: number[];
  if (g.ports === undefined) {
    if (id === 0) fail(where, "'ports' is required for group 0 (relative target port 0 is reserved)");
    ports = [id];
  } else {
    // TARGET PORT COUNT is one byte.
    if (!Array.isArray(g.ports) || g.ports.length === 0 || g.ports.length > 255)
      fail(where, "'ports' must be a list of 1 to 255 relative target port identifiers");
    ports = g.ports.map((p, i) => {
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 0xffff)
        fail(`${where}.ports[${i}]`, 'a relative target port identifier is an integer from 1 to 65535');
      return p;
    });
  }
  return { id, state: g.state as AluaState, ports, preferred: optBool(g, 'preferred', where) };
}

/** A target's `alua`, or undefined when it has none. */
export function normalizeAlua(raw: unknown, where: string): AluaConfig | undefined {
  if (raw === undefined) return undefined;
  const o = asObject(raw, where);
  checkKeys(o, ['localGroup', 'port', 'groups'], where);
  if (!Array.isArray(o.groups) || o.groups.length === 0)
    fail(where, "'groups' must be a non-empty list of target port groups");
  const groups = o.groups.map((g, i) => normalizeGroup(g, `${where}.groups[${i}]`));
  const ids = new Set<number>();
  const ports = new Set<number>();
  groups.forEach((g, i) => {
    if (ids.has(g.id)) fail(`${where}.groups[${i}]`, `'id' ${g.id} is used by another group`);
    ids.add(g.id);
    for (const p of g.ports) {
      // A target port is in exactly one group (SPC-4 5.15.2.1).
      if (ports.has(p)) fail(`${where}.groups[${i}]`, `'ports': port ${p} is in another group too`);
      ports.add(p);
    }
  });
  const localGroup = optInt(o, 'localGroup', -1, 0, 0xffff, where);
  const local = groups.find((g) => g.id === localGroup);
  if (!local) fail(where, "'localGroup' must be the id of one of the groups (this gateway's group)");
  let port: number;
  if (o.port === undefined) {
    if (local.ports.length > 1)
      fail(where, `'port' is required: group ${local.id} has several ports (${local.ports.join(', ')})`);
    port = local.ports[0];
  } else {
    port = optInt(o, 'port', 0, 1, 0xffff, where);
    if (!local.ports.includes(port))
      fail(where, `'port' ${port} is not one of group ${local.id}'s ports (${local.ports.join(', ')})`);
  }
  return { localGroup, port, groups };
}

/** Relative target port of a target without `alua`: its one port. */
export const SINGLE_PORT = 1;

/** This gateway's asymmetric access state (its local group's); active/optimized for a target without `alua`. */
export function localState(alua: AluaConfig | undefined): AluaState {
  return alua ? alua.groups.find((g) => g.id === alua.localGroup)!.state : 'active-optimized';
}

/** The asymmetric access states in which a gateway serves media commands (reads and writes). */
export function isActive(state: AluaState): boolean {
  return state === 'active-optimized' || state === 'active-non-optimized';
}

/**
 * True when this gateway is the only one that may write the target's LUs: no `alua` (one port), or the active
 * groups' ports are exactly this gateway's port. What makes replaying a WRITE ATOMIC redo record kept in the
 * cluster sound (src/backstore/rbd-atomic.ts): nobody else can have written its range since it was recorded.
 */
export function soleWriter(alua: AluaConfig | undefined): boolean {
  if (alua === undefined) return true;
  const active = alua.groups.filter((g) => isActive(g.state)).flatMap((g) => g.ports);
  return active.length === 1 && active[0] === alua.port;
}

/** Every relative target port of the target (its gateways): each may have left a redo record. */
export function allPorts(alua: AluaConfig | undefined): number[] {
  return alua === undefined ? [SINGLE_PORT] : alua.groups.flatMap((g) => g.ports);
}

/**
 * The NAA designator of a LU that several gateways serve: NAA 3h (locally assigned; nodetgt owns no IEEE
 * company_id) and 60 bits of SHA-256 over the target name and the LU's serial, so that every gateway with the
 * same configuration reports the same designator without sharing a state directory, and a host's multipath
 * takes their paths for one device.
 */
export function sharedNaa(targetName: string, serial: string): string {
  const h = createHash('sha256').update(`nodetgt-alua\0${targetName}\0${serial}`).digest();
  h[0] = 0x30 | (h[0] & 0x0f);
  return h.subarray(0, 8).toString('hex');
}
