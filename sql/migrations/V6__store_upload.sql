-- One upload in one statement: store_upload() does what the ingest API used to do in a dozen
-- statements, so that `POST /v1/uploads` costs one round trip to PostgreSQL for its write (see
-- ingest-api/src/store/uploads.rs, which calls it outside an explicit transaction: the statement
-- is the transaction). The rules are those of the README's "Uploading from a tablet":
--
-- 1. An advisory lock on the upload id serializes copies of the same upload; a ledger row of the
--    same device and body hash is a replay (its stored result is returned), any other ledger
--    row of that id is a conflict.
-- 2. Patients (each once, sorted by id, so that concurrent uploads lock them in the same order)
--    are locked and planned under the clinic rule: created and linked; updated by a linked
--    clinic (a row changes only when a value did; phone and e-mail follow merge-patch rules:
--    `*_sent` false keeps the stored value, true with NULL clears it); linked by an unlinked
--    clinic that names the stored patient with the same full name and birth date; else refused.
--    Names are compared as a clerk compares them (case, accents, spaces), which the caller
--    computes: a stored name that is not textually the uploaded one is answered `verify` with
--    the stored name, and the caller calls again with the names it found the same in
--    `verified_ids`/`verified_names` (a stored name changed in between is asked again).
-- 3. A stored checkup id must be the same patient's visit at the same clinic; a stored report
--    id must have the same content (then it is a duplicate and skipped).
-- 4. Only then is anything written, in the order the CDC stream always had: new patients,
--    changed patients, links, the audit trail (patient_changes), checkups, reports,
--    measurements, the ledger row.
--
-- Every refusal returns before the first write. A new patient, checkup or report inserted by a
-- concurrent upload between the checks and the writes fails the statement with a unique
-- violation or a serialization failure: the caller runs it again, and the checks then see it.
--
-- The answer is a JSON object whose `outcome` is `created` or `replayed` (with `result`, the
-- ledger's result), `upload_conflict`, `patient_conflict` or `checkup_conflict` (with
-- `checkup`, the index of the offending checkup), `report_conflict` (with `checkup` and
-- `report` indexes), or `verify` (with `patients`: `checkup` index and stored `full_name`).
-- Indexes are 0-based, as in the upload's JSON pointers.
CREATE OR REPLACE FUNCTION store_upload(
    p_upload_id uuid,
    p_device_id uuid,
    p_clinic_id uuid,
    p_body_sha256 bytea,
    -- The upload's patients, each once, sorted by id; `p_patient_checkups` is the index of the
    -- first checkup naming each.
    p_patient_ids uuid[],
    p_patient_checkups int[],
    p_patient_refs text[],
    p_patient_names text[],
    p_patient_births date[],
    p_patient_sexes text[],
    p_patient_phones text[],
    p_patient_phones_sent boolean[],
    p_patient_emails text[],
    p_patient_emails_sent boolean[],
    p_verified_ids uuid[],
    p_verified_names text[],
    p_checkup_ids uuid[],
    p_checkup_patients uuid[],
    p_checkup_starts timestamptz[],
    p_checkup_ends timestamptz[],
    -- Every report, with its checkup and patient and its position (checkup index, index in
    -- the checkup).
    p_report_ids uuid[],
    p_report_checkups uuid[],
    p_report_patients uuid[],
    p_report_checkup_indexes int[],
    p_report_indexes int[],
    p_report_types text[],
    p_report_serials text[],
    p_report_taken timestamptz[],
    p_report_notes text[],
    p_report_raws jsonb[],
    -- Every measurement of every report, with the catalogue's name, reference range and flag.
    p_measurement_reports uuid[],
    p_measurement_codes text[],
    p_measurement_names text[],
    p_measurement_values float8[],
    p_measurement_units text[],
    p_measurement_lows float8[],
    p_measurement_highs float8[],
    p_measurement_flags text[]
)
RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    previous record;
    stored record;
    found_index int;
    found_report int;
    phone text;
    email text;
    old_values jsonb;
    new_values jsonb;
    pending jsonb := '[]';
    create_ids uuid[] := '{}';
    create_refs text[] := '{}';
    create_names text[] := '{}';
    create_births date[] := '{}';
    create_sexes text[] := '{}';
    create_phones text[] := '{}';
    create_emails text[] := '{}';
    update_ids uuid[] := '{}';
    update_names text[] := '{}';
    update_births date[] := '{}';
    update_sexes text[] := '{}';
    update_phones text[] := '{}';
    update_emails text[] := '{}';
    link_ids uuid[] := '{}';
    link_refs text[] := '{}';
    audit_ids uuid[] := '{}';
    audit_actions text[] := '{}';
    audit_old jsonb[] := '{}';
    audit_new jsonb[] := '{}';
    stored_checkups int;
    inserted_checkups int;
    duplicates uuid[];
    new_reports int;
    new_measurements int;
    result jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_upload_id::text, 0));
    SELECT u.device_id, u.body_sha256, u.result INTO previous
    FROM uploads u WHERE u.id = p_upload_id;
    IF FOUND THEN
        IF previous.device_id = p_device_id AND previous.body_sha256 = p_body_sha256 THEN
            RETURN jsonb_build_object('outcome', 'replayed', 'result', previous.result);
        END IF;
        RETURN jsonb_build_object('outcome', 'upload_conflict');
    END IF;

    FOR i IN 1 .. coalesce(array_length(p_patient_ids, 1), 0) LOOP
        SELECT p.full_name, p.birth_date, p.sex, p.phone, p.email, l.external_ref AS link
        INTO stored
        FROM patients p
        LEFT JOIN patient_clinics l ON l.patient_id = p.id AND l.clinic_id = p_clinic_id
        WHERE p.id = p_patient_ids[i]
        FOR UPDATE OF p;
        IF NOT FOUND THEN
            phone := CASE WHEN p_patient_phones_sent[i] THEN p_patient_phones[i] END;
            email := CASE WHEN p_patient_emails_sent[i] THEN p_patient_emails[i] END;
            create_ids := array_append(create_ids, p_patient_ids[i]);
            create_refs := array_append(create_refs, p_patient_refs[i]);
            create_names := array_append(create_names, p_patient_names[i]);
            create_births := array_append(create_births, p_patient_births[i]);
            create_sexes := array_append(create_sexes, p_patient_sexes[i]);
            create_phones := array_append(create_phones, phone);
            create_emails := array_append(create_emails, email);
            link_ids := array_append(link_ids, p_patient_ids[i]);
            link_refs := array_append(link_refs, p_patient_refs[i]);
            audit_ids := array_append(audit_ids, p_patient_ids[i]);
            audit_actions := array_append(audit_actions, 'created');
            audit_old := array_append(audit_old, '{}'::jsonb);
            audit_new := array_append(audit_new, jsonb_strip_nulls(jsonb_build_object(
                'external_ref', p_patient_refs[i],
                'full_name', p_patient_names[i],
                'birth_date', p_patient_births[i],
                'sex', p_patient_sexes[i],
                'phone', phone,
                'email', email)));
        ELSIF stored.link IS NOT NULL THEN
            phone := CASE WHEN p_patient_phones_sent[i] THEN p_patient_phones[i] ELSE stored.phone END;
            email := CASE WHEN p_patient_emails_sent[i] THEN p_patient_emails[i] ELSE stored.email END;
            old_values := '{}';
            new_values := '{}';
            IF stored.link IS DISTINCT FROM p_patient_refs[i] THEN
                old_values := old_values || jsonb_build_object('external_ref', stored.link);
                new_values := new_values || jsonb_build_object('external_ref', p_patient_refs[i]);
            END IF;
            IF stored.full_name IS DISTINCT FROM p_patient_names[i] THEN
                old_values := old_values || jsonb_build_object('full_name', stored.full_name);
                new_values := new_values || jsonb_build_object('full_name', p_patient_names[i]);
            END IF;
            IF stored.birth_date IS DISTINCT FROM p_patient_births[i] THEN
                old_values := old_values || jsonb_build_object('birth_date', stored.birth_date);
                new_values := new_values || jsonb_build_object('birth_date', p_patient_births[i]);
            END IF;
            IF stored.sex IS DISTINCT FROM p_patient_sexes[i] THEN
                old_values := old_values || jsonb_build_object('sex', stored.sex);
                new_values := new_values || jsonb_build_object('sex', p_patient_sexes[i]);
            END IF;
            IF stored.phone IS DISTINCT FROM phone THEN
                old_values := old_values || jsonb_build_object('phone', stored.phone);
                new_values := new_values || jsonb_build_object('phone', phone);
            END IF;
            IF stored.email IS DISTINCT FROM email THEN
                old_values := old_values || jsonb_build_object('email', stored.email);
                new_values := new_values || jsonb_build_object('email', email);
            END IF;
            IF old_values <> '{}' THEN
                IF old_values ? 'external_ref' THEN
                    link_ids := array_append(link_ids, p_patient_ids[i]);
                    link_refs := array_append(link_refs, p_patient_refs[i]);
                END IF;
                IF old_values - 'external_ref' <> '{}' THEN
                    update_ids := array_append(update_ids, p_patient_ids[i]);
                    update_names := array_append(update_names, p_patient_names[i]);
                    update_births := array_append(update_births, p_patient_births[i]);
                    update_sexes := array_append(update_sexes, p_patient_sexes[i]);
                    update_phones := array_append(update_phones, phone);
                    update_emails := array_append(update_emails, email);
                END IF;
                audit_ids := array_append(audit_ids, p_patient_ids[i]);
                audit_actions := array_append(audit_actions, 'updated');
                audit_old := array_append(audit_old, old_values);
                audit_new := array_append(audit_new, new_values);
            END IF;
        ELSIF stored.birth_date <> p_patient_births[i] THEN
            IF pending <> '[]' THEN
                EXIT;
            END IF;
            RETURN jsonb_build_object('outcome', 'patient_conflict',
                                      'checkup', p_patient_checkups[i]);
        ELSIF stored.full_name = p_patient_names[i]
              OR p_verified_names[array_position(p_verified_ids, p_patient_ids[i])]
                 = stored.full_name THEN
            link_ids := array_append(link_ids, p_patient_ids[i]);
            link_refs := array_append(link_refs, p_patient_refs[i]);
            audit_ids := array_append(audit_ids, p_patient_ids[i]);
            audit_actions := array_append(audit_actions, 'linked');
            audit_old := array_append(audit_old, '{}'::jsonb);
            audit_new := array_append(audit_new,
                                      jsonb_build_object('external_ref', p_patient_refs[i]));
        ELSE
            pending := pending || jsonb_build_array(jsonb_build_object(
                'checkup', p_patient_checkups[i], 'full_name', stored.full_name));
        END IF;
    END LOOP;
    IF pending <> '[]' THEN
        RETURN jsonb_build_object('outcome', 'verify', 'patients', pending);
    END IF;

    SELECT count(*), min(u.ord) FILTER (
               WHERE c.patient_id <> u.patient_id OR c.clinic_id <> p_clinic_id)
    INTO stored_checkups, found_index
    FROM unnest(p_checkup_ids, p_checkup_patients) WITH ORDINALITY AS u(id, patient_id, ord)
    JOIN checkups c ON c.id = u.id;
    IF found_index IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'checkup_conflict', 'checkup', found_index - 1);
    END IF;

    WITH sent AS (
        SELECT m.report_id,
               array_agg(m.code ORDER BY m.code COLLATE "C") AS codes,
               array_agg(m.value ORDER BY m.code COLLATE "C") AS values
        FROM unnest(p_measurement_reports, p_measurement_codes, p_measurement_values)
             AS m(report_id, code, value)
        GROUP BY m.report_id
    ), kept AS (
        SELECT m.report_id,
               array_agg(m.code ORDER BY m.code COLLATE "C") AS codes,
               array_agg(m.value::float8 ORDER BY m.code COLLATE "C") AS values
        FROM measurements m
        WHERE m.report_id = ANY(p_report_ids)
        GROUP BY m.report_id
    ), compared AS (
        SELECT u.ord, r.id,
               r.checkup_id = u.checkup_id
               AND r.instrument_type = u.instrument_type
               AND r.instrument_serial = u.instrument_serial
               AND r.taken_at = u.taken_at
               AND r.notes IS NOT DISTINCT FROM u.notes
               AND r.raw = u.raw
               AND (k.codes, k.values) IS NOT DISTINCT FROM (s.codes, s.values) AS same
        FROM unnest(p_report_ids, p_report_checkups, p_report_types, p_report_serials,
                    p_report_taken, p_report_notes, p_report_raws) WITH ORDINALITY
             AS u(id, checkup_id, instrument_type, instrument_serial, taken_at, notes, raw, ord)
        JOIN reports r ON r.id = u.id
        LEFT JOIN kept k ON k.report_id = u.id
        LEFT JOIN sent s ON s.report_id = u.id
    )
    SELECT coalesce(array_agg(id), '{}'), min(ord) FILTER (WHERE NOT same)
    INTO duplicates, found_report
    FROM compared;
    IF found_report IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'report_conflict',
                                  'checkup', p_report_checkup_indexes[found_report],
                                  'report', p_report_indexes[found_report]);
    END IF;

    IF create_ids <> '{}' THEN
        INSERT INTO patients (id, external_ref, full_name, birth_date, sex, phone, email)
        SELECT * FROM unnest(create_ids, create_refs, create_names, create_births,
                             create_sexes, create_phones, create_emails);
    END IF;
    IF update_ids <> '{}' THEN
        UPDATE patients p SET full_name = u.full_name, birth_date = u.birth_date, sex = u.sex,
                              phone = u.phone, email = u.email, updated_at = now()
        FROM unnest(update_ids, update_names, update_births, update_sexes, update_phones,
                    update_emails) AS u(id, full_name, birth_date, sex, phone, email)
        WHERE p.id = u.id;
    END IF;
    IF link_ids <> '{}' THEN
        INSERT INTO patient_clinics (patient_id, clinic_id, external_ref)
        SELECT u.patient_id, p_clinic_id, u.external_ref
        FROM unnest(link_ids, link_refs) AS u(patient_id, external_ref)
        ON CONFLICT (patient_id, clinic_id) DO UPDATE
            SET external_ref = EXCLUDED.external_ref, updated_at = now();
    END IF;
    IF audit_ids <> '{}' THEN
        INSERT INTO patient_changes (patient_id, clinic_id, device_id, upload_id, action,
                                     old_values, new_values)
        SELECT u.patient_id, p_clinic_id, p_device_id, p_upload_id, u.action, u.old_values,
               u.new_values
        FROM unnest(audit_ids, audit_actions, audit_old, audit_new) WITH ORDINALITY
             AS u(patient_id, action, old_values, new_values, ord)
        ORDER BY u.ord;
    END IF;

    INSERT INTO checkups (id, patient_id, clinic_id, device_id, started_at, completed_at)
    SELECT u.id, u.patient_id, p_clinic_id, p_device_id, u.started_at, u.completed_at
    FROM unnest(p_checkup_ids, p_checkup_patients, p_checkup_starts, p_checkup_ends)
         AS u(id, patient_id, started_at, completed_at)
    ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS inserted_checkups = ROW_COUNT;
    IF inserted_checkups + stored_checkups <> coalesce(array_length(p_checkup_ids, 1), 0) THEN
        RAISE EXCEPTION 'a checkup of upload % was stored concurrently; run the upload again',
            p_upload_id
            USING ERRCODE = 'serialization_failure';
    END IF;

    INSERT INTO reports (id, checkup_id, patient_id, instrument_type, instrument_serial,
                         taken_at, notes, raw)
    SELECT * FROM unnest(p_report_ids, p_report_checkups, p_report_patients, p_report_types,
                         p_report_serials, p_report_taken, p_report_notes, p_report_raws)
                  AS u(id, checkup_id, patient_id, instrument_type, instrument_serial,
                       taken_at, notes, raw)
    WHERE u.id <> ALL(duplicates);
    GET DIAGNOSTICS new_reports = ROW_COUNT;

    INSERT INTO measurements (report_id, code, display_name, value, unit, reference_low,
                              reference_high, flag)
    SELECT u.report_id, u.code, u.display_name, u.value::numeric, u.unit, u.low::numeric,
           u.high::numeric, u.flag
    FROM unnest(p_measurement_reports, p_measurement_codes, p_measurement_names,
                p_measurement_values, p_measurement_units, p_measurement_lows,
                p_measurement_highs, p_measurement_flags)
         AS u(report_id, code, display_name, value, unit, low, high, flag)
    WHERE u.report_id <> ALL(duplicates);
    GET DIAGNOSTICS new_measurements = ROW_COUNT;

    result := jsonb_build_object(
        'upload_id', p_upload_id,
        'checkups', coalesce(array_length(p_checkup_ids, 1), 0),
        'reports', new_reports,
        'measurements', new_measurements,
        'duplicate_reports', coalesce(array_length(duplicates, 1), 0),
        'commit_lsn', NULL);
    INSERT INTO uploads (id, device_id, body_sha256, result)
    VALUES (p_upload_id, p_device_id, p_body_sha256, result);
    RETURN jsonb_build_object('outcome', 'created', 'result', result);
END
$$;

-- The function runs with its caller's rights (SECURITY INVOKER): the ingest role's grants of
-- V3–V5 still bound what an upload can touch.
REVOKE ALL ON FUNCTION store_upload FROM PUBLIC;
GRANT EXECUTE ON FUNCTION store_upload TO myhealth_ingest;
