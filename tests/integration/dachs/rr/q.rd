<!-- The RegTAP 1.1 tables (plus the RegTAP 1.2 coverage tables
stc_spatial, stc_temporal and stc_spectral) in the schema rr, queryable
through this DaCHS's TAP service, for the voharvest integration tests.

DaCHS ships no RegTAP tables (the GAVO registry's own ingestor is not part
of the package), so they are defined here column by column as RegTAP
describes them, and loaded from records.json, which
tests/integration/dachs/regtap_records.py writes: records of the services
this DaCHS really runs (SIA v1, SIA v2, TAP) with their real access URLs,
and of a few look-alike resources elsewhere that a search must filter out.

Everything RegTAP says is case-insensitive (ivoids, standard ids, types,
wavebands) is stored in lower case, as RegTAP requires. -->
<resource schema="rr" resdir=".">
  <meta name="creationDate">2024-05-01T12:00:00Z</meta>
  <meta name="title">VOH test registry (RegTAP)</meta>
  <meta name="description">
    A small relational registry in the RegTAP 1.1 layout, with the RegTAP 1.2
    coverage tables, describing the services of this test site and a few
    look-alikes; made for the voharvest integration tests.
  </meta>
  <meta name="subject">virtual-observatories</meta>
  <meta name="creator">Harvester, V.</meta>
  <meta name="utype">ivo://ivoa.net/std/regtap#1.1</meta>

  <table id="resource" onDisk="True" adql="True" primary="ivoid">
    <meta name="description">The resources (services, data collections,
      organisations, ...) in this registry.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="Unambiguous reference to the resource, lower case."/>
    <column name="res_type" type="text"
      description="Resource type (vs:catalogservice, vr:organisation, ...), lower case."/>
    <column name="created" type="timestamp"
      description="When the resource was first registered."/>
    <column name="short_name" type="unicode"
      description="A short name or abbreviation for the resource."/>
    <column name="res_title" type="unicode" ucd="meta.title"
      description="The full name of the resource."/>
    <column name="updated" type="timestamp"
      description="When the resource description was last changed."/>
    <column name="content_level" type="text"
      description="Hash-separated audiences (research, university, ...), lower case."/>
    <column name="res_description" type="unicode"
      description="An account of the nature of the resource."/>
    <column name="reference_url" type="text" ucd="meta.ref.url"
      description="URL pointing to a human-readable document describing the resource."/>
    <column name="creator_seq" type="unicode"
      description="Creator names, separated by semicolons."/>
    <column name="content_type" type="text"
      description="Hash-separated nature of the content (survey, archive, ...), lower case."/>
    <column name="source_format" type="text"
      description="Format of source_value (bibcode, doi, ...)."/>
    <column name="source_value" type="unicode"
      description="A bibliographic reference the resource is derived from."/>
    <column name="res_version" type="text"
      description="Label for the version of the content."/>
    <column name="region_of_regard" type="real" unit="deg"
      description="Intrinsic size scale of the data (resolution)."/>
    <column name="waveband" type="text"
      description="Hash-separated messenger terms (optical, uv, ...), lower case."/>
    <column name="rights" type="unicode"
      description="A statement of usage conditions."/>
    <column name="rights_uri" type="text"
      description="A URI identifying a license."/>
    <column name="harvested_from" type="text"
      description="IVOA identifier of the registry this record was harvested from."/>
  </table>

  <table id="res_role" onDisk="True" adql="True">
    <meta name="description">Entities (persons, organisations) related to
      resources: creators, contacts, publishers.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="role_name" type="unicode"
      description="The name of the entity."/>
    <column name="role_ivoid" type="text"
      description="IVOA identifier of the entity, if registered."/>
    <column name="street_address" type="unicode"
      description="Postal address (contacts only)."/>
    <column name="email" type="text"
      description="Email address (contacts only)."/>
    <column name="telephone" type="text"
      description="Telephone number (contacts only)."/>
    <column name="logo" type="text"
      description="URL of a logo (creators only)."/>
    <column name="base_role" type="text"
      description="contact, publisher, creator or contributor."/>
    <column name="role_index" type="smallint" required="True"
      description="Position of this role among the roles of the same base role."/>
  </table>

  <table id="res_subject" onDisk="True" adql="True">
    <meta name="description">Topics, object types, or other descriptive
      keywords about the resources.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="res_subject" type="unicode"
      description="One subject of the resource."/>
  </table>

  <table id="capability" onDisk="True" adql="True">
    <meta name="description">Pieces of behaviour of the resources (SIA, TAP,
      VOSI endpoints, ...).</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="cap_index" type="smallint" required="True"
      description="Index of the capability within the resource."/>
    <column name="cap_name" type="text"
      description="A name for the capability, if given."/>
    <column name="cap_type" type="text"
      description="The xsi:type of the capability, lower case."/>
    <column name="cap_description" type="unicode"
      description="A description of what the capability does."/>
    <column name="standard_id" type="text"
      description="The standard the capability implements, lower case."/>
  </table>

  <table id="interface" onDisk="True" adql="True">
    <meta name="description">The endpoints of the capabilities.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="cap_index" type="smallint" required="True"
      description="Index of the parent capability."/>
    <column name="intf_index" type="smallint" required="True"
      description="Index of the interface within the resource."/>
    <column name="intf_type" type="text"
      description="The xsi:type of the interface (vs:paramhttp, ...), lower case."/>
    <column name="intf_role" type="text"
      description="std for interfaces that follow the capability's standard."/>
    <column name="std_version" type="text"
      description="Version of the standard the interface implements."/>
    <column name="query_type" type="text"
      description="Hash-separated HTTP methods (get, post), lower case."/>
    <column name="result_type" type="text"
      description="The MIME type of the answers."/>
    <column name="wsdl_url" type="text"
      description="WSDL of a SOAP interface."/>
    <column name="url_use" type="text"
      description="How to use access_url: full, base or dir."/>
    <column name="access_url" type="text" ucd="meta.ref.url"
      description="The URL at which the interface is found."/>
    <column name="mirror_url" type="text"
      description="Hash-separated mirror URLs."/>
    <column name="authenticated_only" type="smallint" required="True"
      description="1 if the interface can only be used with authentication."/>
    <column name="security_method_id" type="text"
      description="Standard id of a security method (several: hash-separated)."/>
  </table>

  <table id="intf_param" onDisk="True" adql="True">
    <meta name="description">Input parameters of parameter-based interfaces.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="intf_index" type="smallint" required="True"
      description="Index of the parent interface."/>
    <column name="name" type="text" description="Name of the parameter."/>
    <column name="ucd" type="text" description="UCD of the parameter."/>
    <column name="unit" type="text" description="Unit of the parameter."/>
    <column name="utype" type="text" description="Utype of the parameter."/>
    <column name="std" type="smallint" description="1 if defined by the standard.">
      <values nullLiteral="-1"/>
    </column>
    <column name="extended_schema" type="text" description="Extended type schema."/>
    <column name="extended_type" type="text" description="Extended type name."/>
    <column name="arraysize" type="text" description="Array size."/>
    <column name="delim" type="text" description="Array delimiter."/>
    <column name="param_use" type="text" description="required, optional or ignored."/>
    <column name="param_description" type="unicode" description="What the parameter means."/>
  </table>

  <table id="res_date" onDisk="True" adql="True">
    <meta name="description">Dates of events in the lives of the resources.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="date_value" type="timestamp" description="The date."/>
    <column name="value_role" type="text" description="What happened (created, updated, ...)."/>
  </table>

  <table id="res_detail" onDisk="True" adql="True">
    <meta name="description">Further metadata of resources and capabilities,
      keyed by an xpath into the VOResource document.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="cap_index" type="smallint"
      description="Index of the capability the detail is of; NULL for resource details.">
      <values nullLiteral="-1"/>
    </column>
    <column name="detail_xpath" type="text" description="The xpath of the detail."/>
    <column name="detail_value" type="unicode" description="The value of the detail."/>
  </table>

  <table id="res_schema" onDisk="True" adql="True">
    <meta name="description">Schemas (groups of tables) of the resources.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="schema_index" type="smallint" required="True"
      description="Index of the schema within the resource."/>
    <column name="schema_name" type="text" description="Name of the schema."/>
    <column name="schema_title" type="unicode" description="Title of the schema."/>
    <column name="schema_description" type="unicode" description="What is in the schema."/>
    <column name="schema_utype" type="text" description="Data model of the schema."/>
  </table>

  <table id="res_table" onDisk="True" adql="True">
    <meta name="description">Tables of the resources.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="schema_index" type="smallint"
      description="Index of the parent schema.">
      <values nullLiteral="-1"/>
    </column>
    <column name="table_index" type="smallint" required="True"
      description="Index of the table within the resource."/>
    <column name="table_name" type="text" description="Fully qualified name of the table."/>
    <column name="table_title" type="unicode" description="Title of the table."/>
    <column name="table_description" type="unicode" description="What is in the table."/>
    <column name="table_utype" type="text" description="Data model of the table, lower case."/>
    <column name="table_type" type="text" description="output, base_table or view."/>
    <column name="nrows" type="bigint" description="Approximate number of rows.">
      <values nullLiteral="-1"/>
    </column>
  </table>

  <table id="table_column" onDisk="True" adql="True">
    <meta name="description">Columns of the tables of the resources.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="table_index" type="smallint" required="True"
      description="Index of the parent table."/>
    <column name="name" type="text" description="Name of the column."/>
    <column name="ucd" type="text" description="UCD of the column."/>
    <column name="unit" type="text" description="Unit of the column."/>
    <column name="utype" type="text" description="Utype of the column."/>
    <column name="std" type="smallint" description="1 if defined by a standard.">
      <values nullLiteral="-1"/>
    </column>
    <column name="datatype" type="text" description="Type of the column."/>
    <column name="extended_schema" type="text" description="Extended type schema."/>
    <column name="extended_type" type="text" description="Extended type name."/>
    <column name="arraysize" type="text" description="Array size."/>
    <column name="delim" type="text" description="Array delimiter."/>
    <column name="type_system" type="text" description="The type system of datatype."/>
    <column name="flag" type="text" description="Hash-separated flags (indexed, primary, nullable)."/>
    <column name="column_description" type="unicode" description="What the column holds."/>
  </table>

  <table id="relationship" onDisk="True" adql="True">
    <meta name="description">Relationships between resources.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="relationship_type" type="text" description="served-by, mirror-of, ..."/>
    <column name="related_id" type="text" description="IVOA identifier of the related resource."/>
    <column name="related_name" type="unicode" description="Name of the related resource."/>
  </table>

  <table id="validation" onDisk="True" adql="True">
    <meta name="description">Validation levels of resources and capabilities.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="validated_by" type="text" description="Who validated."/>
    <column name="val_level" type="smallint" description="The validation level.">
      <values nullLiteral="-1"/>
    </column>
    <column name="cap_index" type="smallint" description="The capability validated, or NULL.">
      <values nullLiteral="-1"/>
    </column>
  </table>

  <table id="alt_identifier" onDisk="True" adql="True">
    <meta name="description">Other identifiers (DOIs, ORCIDs) of resources.</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="alt_identifier" type="text" description="A URI for the resource."/>
  </table>

  <table id="stc_spatial" onDisk="True" adql="True">
    <meta name="description">Spatial coverage of resources (RegTAP 1.2).</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="coverage" type="smoc" ucd="pos.outline;obs"
      description="A MOC of the area covered by the resource."/>
    <column name="ref_system_name" type="text"
      description="The reference frame of coverage (NULL: ICRS)."/>
  </table>

  <table id="stc_temporal" onDisk="True" adql="True">
    <meta name="description">Time coverage of resources (RegTAP 1.2).</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="time_start" type="double precision" unit="d" ucd="time.start;obs.exposure"
      description="MJD at which an interval of coverage starts."/>
    <column name="time_end" type="double precision" unit="d" ucd="time.end;obs.exposure"
      description="MJD at which an interval of coverage ends."/>
  </table>

  <table id="stc_spectral" onDisk="True" adql="True">
    <meta name="description">Spectral coverage of resources (RegTAP 1.2).</meta>
    <column name="ivoid" type="text" ucd="meta.ref.ivoid"
      description="The parent resource."/>
    <column name="spectral_start" type="double precision" unit="J" ucd="em.energy;stat.min"
      description="Lowest photon energy of an interval of coverage."/>
    <column name="spectral_end" type="double precision" unit="J" ucd="em.energy;stat.max"
      description="Highest photon energy of an interval of coverage."/>
  </table>

  <data id="import">
    <sources pattern="records.json"/>
    <!-- records.json: {"table name": [{column: value, ...}, ...], ...};
      columns a row does not mention are NULL. -->
    <embeddedGrammar isDispatching="True">
      <iterator>
        <code>
          import json
          with open(self.sourceToken, encoding="utf-8") as source:
            records = json.load(source)
          for tableName, rows in records.items():
            columns = [col.name for col in self.grammar.rd.getById(tableName)]
            for row in rows:
              unknown = set(row) - set(columns)
              if unknown:
                raise base.DataError("%s: no columns %s" % (tableName, sorted(unknown)))
              yield tableName, dict((name, row.get(name)) for name in columns)
        </code>
      </iterator>
    </embeddedGrammar>

    <make table="resource" role="resource"><rowmaker idmaps="*"/></make>
    <make table="res_role" role="res_role"><rowmaker idmaps="*"/></make>
    <make table="res_subject" role="res_subject"><rowmaker idmaps="*"/></make>
    <make table="capability" role="capability"><rowmaker idmaps="*"/></make>
    <make table="interface" role="interface"><rowmaker idmaps="*"/></make>
    <make table="intf_param" role="intf_param"><rowmaker idmaps="*"/></make>
    <make table="res_date" role="res_date"><rowmaker idmaps="*"/></make>
    <make table="res_detail" role="res_detail"><rowmaker idmaps="*"/></make>
    <make table="res_schema" role="res_schema"><rowmaker idmaps="*"/></make>
    <make table="res_table" role="res_table"><rowmaker idmaps="*"/></make>
    <make table="table_column" role="table_column"><rowmaker idmaps="*"/></make>
    <make table="relationship" role="relationship"><rowmaker idmaps="*"/></make>
    <make table="validation" role="validation"><rowmaker idmaps="*"/></make>
    <make table="alt_identifier" role="alt_identifier"><rowmaker idmaps="*"/></make>
    <make table="stc_spatial" role="stc_spatial">
      <rowmaker idmaps="ivoid,ref_system_name">
        <map key="coverage">pgsphere.SMoc.fromASCII(@coverage)</map>
      </rowmaker>
    </make>
    <make table="stc_temporal" role="stc_temporal"><rowmaker idmaps="*"/></make>
    <make table="stc_spectral" role="stc_spectral"><rowmaker idmaps="*"/></make>
  </data>
</resource>
